// Package fault injects errors and latency into API requests, for demos and for
// exercising alerts. It is off unless configured.
package fault

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Config says how often to fail or delay a request.
type Config struct {
	ErrorRatio   float64       // fraction of requests answered 503, 0..1
	Latency      time.Duration // delay added to a fraction of requests
	LatencyRatio float64       // that fraction, 0..1
}

// Enabled reports whether any fault would ever be injected.
func (c Config) Enabled() bool {
	return c.ErrorRatio > 0 || (c.Latency > 0 && c.LatencyRatio > 0)
}

// Validate checks the ratios and the latency.
func (c Config) Validate() error {
	if c.ErrorRatio < 0 || c.ErrorRatio > 1 {
		return fmt.Errorf("-fault-error-ratio (FAULT_ERROR_RATIO) %v is not within 0..1", c.ErrorRatio)
	}
	if c.LatencyRatio < 0 || c.LatencyRatio > 1 {
		return fmt.Errorf("-fault-latency-ratio (FAULT_LATENCY_RATIO) %v is not within 0..1", c.LatencyRatio)
	}
	if c.Latency < 0 {
		return fmt.Errorf("-fault-latency (FAULT_LATENCY) %v is negative", c.Latency)
	}
	return nil
}

// Span attributes marking a request that got an injected fault.
const (
	AttrLatency = attribute.Key("fault.latency_seconds") // the delay added
	AttrError   = attribute.Key("fault.error")           // answered 503 on purpose
)

// Injector applies a Config to requests.
type Injector struct {
	cfg              Config
	errors, latency  prometheus.Counter
	writeUnavailable func(w http.ResponseWriter)
}

// New returns an injector counting into storage_api_faults_injected_total{kind} on reg.
// unavailable writes the response of an injected error (the API's JSON 503).
func New(cfg Config, reg prometheus.Registerer, unavailable func(w http.ResponseWriter)) *Injector {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storage_api_faults_injected_total",
		Help: "Faults injected into API requests on purpose (-fault-* flags), by kind (error, latency).",
	}, []string{"kind"})
	reg.MustRegister(c)
	return &Injector{cfg: cfg, errors: c.WithLabelValues("error"), latency: c.WithLabelValues("latency"), writeUnavailable: unavailable}
}

// Middleware delays and/or fails a share of the requests, before next sees them.
func (in *Injector) Middleware(next http.Handler) http.Handler {
	if !in.cfg.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A traced request says on its span that its slowness or failure was on purpose
		// (the span is a no-op when the request is not traced).
		span := trace.SpanFromContext(r.Context())
		if in.cfg.Latency > 0 && rand.Float64() < in.cfg.LatencyRatio {
			in.latency.Inc()
			span.SetAttributes(AttrLatency.Float64(in.cfg.Latency.Seconds()))
			span.AddEvent("fault injected: latency")
			t := time.NewTimer(in.cfg.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if rand.Float64() < in.cfg.ErrorRatio {
			in.errors.Inc()
			span.SetAttributes(AttrError.Bool(true))
			span.AddEvent("fault injected: error")
			in.writeUnavailable(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}
