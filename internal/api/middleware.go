package api

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
)

// RequestIDHeader carries the request id: taken from the client when it sent a usable
// one, generated otherwise, and echoed in the response.
const RequestIDHeader = "X-Request-Id"

// RequestID returns the request's id. observe stores it in the request's own header
// (rather than a context value, which would copy the whole request per request).
func RequestID(r *http.Request) string { return r.Header.Get(RequestIDHeader) }

// StatusClientClosedRequest is recorded when the client went away before the answer
// (nginx's convention; it is never sent).
const StatusClientClosedRequest = 499

// observe is the one middleware every route goes through. It gives the request an id,
// recovers panics into a JSON 500, continues or starts its trace (when tr is not nil),
// and, once the response is written, records the request's metrics (when route is not
// nil) and its access-log line (when access is not nil), both carrying the trace id of a
// sampled request. One wrapper of the ResponseWriter serves all of them.
func observe(route *metrics.Route, log *slog.Logger, access *accessLog, tr *serverTracer, pattern string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			if route != nil {
				route.Start()
			}
			var span trace.Span
			if tr != nil {
				r, span = tr.start(r, pattern, start)
			}
			id := r.Header.Get(RequestIDHeader)
			if !validRequestID(id) {
				id = newRequestID()
				r.Header.Set(RequestIDHeader, id)
			}
			w.Header()[RequestIDHeader] = []string{id}
			rw := &responseWriter{ResponseWriter: w}
			// Request framing on this connection (framing.go): a possible smuggling
			// attempt is refused, and nothing more is read from the connection.
			verdict := framingVerdict(r)
			if verdict != framingOK {
				w.Header()["Connection"] = connectionClose
			}

			defer func() {
				p := recover()
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					// Deliberate abort: let net/http close the connection quietly.
					defer panic(p)
				} else if p != nil {
					if route != nil {
						route.Panicked()
					}
					log.LogAttrs(r.Context(), slog.LevelError, "handler panic",
						slog.String("request_id", id), slog.String("path", pattern), slog.Any("panic", p))
					if span != nil {
						span.AddEvent("panic", trace.WithAttributes(attribute.String("panic", fmt.Sprint(p))))
					}
					if !rw.wroteHeader() {
						writeError(rw, http.StatusInternalServerError, "internal error")
					}
					rw.status = http.StatusInternalServerError
				}
				status := rw.status
				switch {
				case r.Context().Err() != nil && (status == 0 || rw.writeErr != nil):
					status = StatusClientClosedRequest
				case status == 0:
					status = http.StatusOK // handler wrote nothing: net/http sends 200
				}
				elapsed := time.Since(start)
				reqSize := max(r.ContentLength, 0)
				var traceID, spanID string
				if span != nil {
					if sc := span.SpanContext(); sc.IsSampled() {
						traceID, spanID = sc.TraceID().String(), sc.SpanID().String()
					}
					endSpan(span, status, reqSize, rw.written, start.Add(elapsed))
				}
				if route != nil {
					route.Done(metrics.MethodLabel(r.Method), status, elapsed, reqSize, rw.written, traceID)
				}
				if access != nil {
					access.write(start.Add(elapsed), accessEntry{
						method: truncate(r.Method, maxEchoedMethod), path: pattern, uri: truncate(r.URL.RequestURI(), maxLoggedURI),
						status: status, bytes: rw.written, duration: elapsed,
						requestID: id, remote: r.RemoteAddr, traceID: traceID, spanID: spanID,
					})
				}
			}()
			if verdict == framingAmbiguous {
				writeError(rw, http.StatusBadRequest, "request has both Content-Length and Transfer-Encoding")
				return
			}
			next.ServeHTTP(rw, r)
		})
	}
}

var connectionClose = []string{"close"}

// validRequestID accepts a client's id if it is short and printable ASCII, so it is
// safe to log and echo.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random hex digits. Uniqueness, not secrecy, is the goal, so
// the fast runtime generator is enough.
func newRequestID() string {
	var b [8]byte
	v := rand.Uint64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// Client-controlled text is bounded wherever it is echoed or logged, so that a request
// cannot make a response or a log line larger than about the limits below (net/http
// accepts methods and URIs up to the header size limit). The request id is bounded by
// validRequestID; header values are never echoed.
const (
	maxEchoedMethod = 32  // the longest standard method is 7 bytes
	maxLoggedURI    = 256 // path and query
)

// truncate cuts s to at most n bytes, marking the cut with "...". The cut may split a
// UTF-8 sequence; the access log replaces the broken rune.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
