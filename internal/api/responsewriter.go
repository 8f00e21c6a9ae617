package api

import (
	"bufio"
	"net"
	"net/http"
)

// responseWriter records the status and body size a handler wrote. It deliberately has
// no ReadFrom: net/http's ReadFrom flushes the headers and then writes the body with
// separate system calls (sendfile only helps for files, which no store returns), so
// io.Copy through Write, one buffered write per response, is faster for our objects. Like client_golang's
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
