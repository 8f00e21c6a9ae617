// Package fault injects errors and latency into API requests, for demos and for
// exercising alerts. It is off unless configured.
package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Validate checks the ratios and the latency, reporting every problem at once.
func (c Config) Validate() error {
	var errs []error
	if !(c.ErrorRatio >= 0 && c.ErrorRatio <= 1) {
		errs = append(errs, fmt.Errorf("-fault-error-ratio (FAULT_ERROR_RATIO) %v is not within 0..1", c.ErrorRatio))
	}
	if !(c.LatencyRatio >= 0 && c.LatencyRatio <= 1) {
		errs = append(errs, fmt.Errorf("-fault-latency-ratio (FAULT_LATENCY_RATIO) %v is not within 0..1", c.LatencyRatio))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("-fault-latency (FAULT_LATENCY) %v is negative", c.Latency))
	}
	return errors.Join(errs...)
}

// Span attributes marking a request that got an injected fault.
const (
	AttrLatency = attribute.Key("fault.latency_seconds") // the delay added
	AttrError   = attribute.Key("fault.error")           // answered 503 on purpose
)

// Injector decides, per request, which faults to inject, and applies the delay. What a
// failed request is answered with is the HTTP layer's business (internal/api).
type Injector struct {
	cfg             Config
	errors, latency prometheus.Counter
}

// New returns an injector counting into storage_api_faults_injected_total{kind} on reg.
func New(cfg Config, reg prometheus.Registerer) *Injector {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storage_api_faults_injected_total",
		Help: "Faults injected into API requests on purpose (-fault-* flags), by kind (error, latency).",
	}, []string{"kind"})
	reg.MustRegister(c)
	return &Injector{cfg: cfg, errors: c.WithLabelValues("error"), latency: c.WithLabelValues("latency")}
}

// Enabled reports whether any fault would ever be injected.
func (in *Injector) Enabled() bool { return in != nil && in.cfg.Enabled() }

// Inject applies the faults drawn for one request: it waits out an injected delay (returning
// ctx's error if the request ends first) and reports whether the request is to fail. Each
// injected fault is counted and, on a traced request, marked on its span (a no-op span
// otherwise), so its slowness or failure reads as on purpose.
func (in *Injector) Inject(ctx context.Context) (fail bool, err error) {
	span := trace.SpanFromContext(ctx)
	if in.cfg.Latency > 0 && rand.Float64() < in.cfg.LatencyRatio {
		in.latency.Inc()
		span.SetAttributes(AttrLatency.Float64(in.cfg.Latency.Seconds()))
		span.AddEvent("fault injected: latency")
		t := time.NewTimer(in.cfg.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
	}
	if rand.Float64() < in.cfg.ErrorRatio {
		in.errors.Inc()
		span.SetAttributes(AttrError.Bool(true))
		span.AddEvent("fault injected: error")
		return true, nil
	}
	return false, nil
}
