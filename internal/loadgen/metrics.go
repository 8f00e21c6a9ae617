package loadgen

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
)

// durationBuckets are the server's http_request_duration_seconds buckets (one source,
// internal/metrics), so client- and server-observed latency compare bucket by bucket.
var durationBuckets = metrics.DurationBuckets

// Metrics are loadgen's own Prometheus metrics, on a private registry so
// that nothing registered globally by a library leaks into /metrics.
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// Rate mode's timetable: scheduled = finished + in flight + dropped.
	scheduled, late, dropped prometheus.Counter
	workers                  prometheus.Gauge
}

// NewMetrics creates and registers the metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loadgen_requests_total",
			Help: "Requests sent by loadgen that finished, by method and status code (\"error\" when no HTTP answer came).",
		}, []string{"method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "loadgen_request_duration_seconds",
			Help:                            "Client-observed request latency; in rate mode measured from the scheduled send time.",
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
			NativeHistogramMaxExemplars:     10,
		}, []string{"method"}),
		scheduled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loadgen_requests_scheduled_total",
			Help: "Requests that fell due on the rate-mode timetable: each is sent (loadgen_requests_total once it finishes) or dropped.",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loadgen_requests_late_total",
			Help: "Rate-mode requests sent after their due time because every worker was busy at -max-concurrency; their latency counts the wait.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loadgen_requests_dropped_total",
			Help: "Rate-mode requests that fell due but were never sent (still waiting for a worker when the run stopped).",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loadgen_workers",
			Help: "Rate-mode workers (the pool grows with need up to -max-concurrency).",
		}),
	}
	m.Registry.MustRegister(
		m.requests, m.duration, m.scheduled, m.late, m.dropped, m.workers,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Observe records one finished request; traceID, when set, is the id of its sampled
// trace, kept as the exemplar {trace_id="..."} of its latency.
func (m *Metrics) Observe(method string, code int, err error, latency time.Duration, traceID string) {
	m.requests.WithLabelValues(method, StatusLabel(code, err)).Inc()
	o := m.duration.WithLabelValues(method)
	if traceID == "" {
		o.Observe(latency.Seconds())
		return
	}
	o.(prometheus.ExemplarObserver).ObserveWithExemplar(latency.Seconds(), prometheus.Labels{"trace_id": traceID})
}

// Handler serves /metrics, and /healthz for container probes.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// serveMetrics listens on addr at once, so a taken port fails the start, and
// serves in the background. The returned function shuts the server down.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return ln.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
