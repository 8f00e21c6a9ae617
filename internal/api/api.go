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

type server struct {
	store          storage.Store
	maxObjectSize  int64
	log            *slog.Logger
	accessLog      *accessLog
	metrics        *metrics.HTTP
	metricsHandler http.Handler
	faults         *fault.Injector
	shuttingDown   func() bool
}

// New returns the API's handler.
func New(o Options) http.Handler {
	s := &server{
		store:          o.Store,
		maxObjectSize:  o.MaxObjectSize,
		log:            o.Log,
		accessLog:      newAccessLog(o.AccessLog),
		metrics:        o.Metrics,
		metricsHandler: o.MetricsHandler,
		faults:         o.Faults,
		shuttingDown:   o.ShuttingDown,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.shuttingDown == nil {
		s.shuttingDown = func() bool { return false }
	}
	if s.metricsHandler == nil {
		s.metricsHandler = notFound()
	}
	mux := http.NewServeMux()
	s.register(mux)
	return mux
}
