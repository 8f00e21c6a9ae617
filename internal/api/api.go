// Package api is the Storage API's HTTP layer: routes, handlers and the middleware that
// observes every request.
package api

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/admission"
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
	// Tracing starts a server span per request (internal/tracing); nil switches
	// tracing off, at no cost per request.
	Tracing trace.TracerProvider
	// TraceHeadRatio, below 1, is the share of requests without a traceparent that get a
	// span at all (tracing.WithHeadSampling); the rest skip the SDK. 0 means 1.
	TraceHeadRatio float64
	// ShuttingDown reports whether shutdown began (readiness then fails).
	ShuttingDown func() bool

	// Budget bounds the body bytes held in memory at once; nil for no bound.
	Budget *admission.Budget
	// TransferRate is the minimum pace of request and response bodies; zero for none.
	TransferRate admission.Rate
	// ReadTimeout and WriteTimeout cap a body's transfer even at the minimum rate (the
	// server's own timeouts, which the rate's deadlines replace while a body moves).
	ReadTimeout, WriteTimeout time.Duration
	// Admission counts refused requests; nil for none.
	Admission *metrics.Admission
}

// server is the handler's state: its options, defaults filled in.
type server struct {
	Options
	access *accessLog
	bodies *bodies
	// unclean are the routes for non-canonical paths, in routing-table order.
	unclean []prefixRoute
	tracer  *serverTracer
}

// New returns the API's handler.
func New(o Options) http.Handler {
	s := &server{Options: o, access: newAccessLog(o.AccessLog), bodies: &bodies{
		budget: o.Budget, rate: o.TransferRate, admission: o.Admission,
		readTimeout: o.ReadTimeout, writeTimeout: o.WriteTimeout,
	}, tracer: newServerTracer(o.Tracing, o.TraceHeadRatio)}
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
	return s.dispatch(mux)
}
