// Package api is the Storage API's HTTP layer: routes, handlers and the middleware that
// observes every request.
package api

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// Options are what the handler needs.
type Options struct {
	Store         storage.Store
	MaxObjectSize int64
	Log           *slog.Logger
	// AccessLog receives one JSON line per request; nil switches the access log off.
	// It must be safe for concurrent use and should be buffered (internal/logging).
	AccessLog io.Writer
	// Metrics records the HTTP metrics; nil switches instrumentation off.
	Metrics *metrics.HTTP
	// MetricsHandler serves GET /metrics.
	MetricsHandler http.Handler
	// Faults injects errors and latency into /api routes; nil for none.
	Faults *fault.Injector
	// ShuttingDown reports whether shutdown began (readiness then fails).
	ShuttingDown func() bool
}

// server is the handler's state: its options, defaults filled in.
type server struct {
	Options
	access *accessLog
}

// New returns the API's handler.
func New(o Options) http.Handler {
	s := &server{Options: o, access: newAccessLog(o.AccessLog)}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.ShuttingDown == nil {
		s.ShuttingDown = func() bool { return false }
	}
	if s.MetricsHandler == nil {
		s.MetricsHandler = notFound()
	}
	mux := http.NewServeMux()
	s.register(mux)
	return mux
}
