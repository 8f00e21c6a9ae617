package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// responseWriter records the status and body size a handler wrote. Like client_golang's
// promhttp delegator it must not hide the optional interfaces of the writer it wraps:
// Flush and Hijack are forwarded, and Unwrap lets http.ResponseController reach the
// rest (deadlines, full duplex).
type responseWriter struct {
	http.ResponseWriter
	status   int
	written  int64
	writeErr error
}

func (w *responseWriter) WriteHeader(code int) {
	// 1xx are interim responses; the final status comes later.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return n, err
}

// ReadFrom keeps io.Copy's sendfile/splice path of the underlying writer.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.written += n
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return n, err
}

func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wroteHeader reports whether the response has started.
func (w *responseWriter) wroteHeader() bool { return w.status != 0 }
