// Package metrics defines the service's Prometheus metrics. Names and labels are an
// interface: dashboards, alert rules and tests depend on them (docs/metrics.md).
//
// Everything is registered on a registry the caller passes in; nothing uses the global
// default registry, so tests and benchmarks can build as many servers as they like.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DurationBuckets are the classic buckets of every latency histogram: the OpenTelemetry
// and Python client defaults, so dashboards written for either line up.
var DurationBuckets = []float64{.005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10}

// SizeBuckets cover 0 B to the 10 MiB default object limit and beyond.
var SizeBuckets = prometheus.ExponentialBuckets(64, 4, 10) // 64 B .. 16 MiB

// Native histogram settings: bucket factor 1.1 (about 5% relative error), a bounded
// bucket count, and a reset period that keeps a long-running process from drifting to
// ever coarser resolution.
const (
	nativeFactor      = 1.1
	nativeMaxBuckets  = 160
	nativeMinResetDur = time.Hour
	// nativeMaxExemplars is how many exemplars a native histogram keeps (the classic
	// buckets keep the latest of each bucket). client_golang's default is 10.
	nativeMaxExemplars = 10
)

// TraceIDLabel is the exemplar label holding a trace id: the name Grafana's and
// Prometheus's exemplar support look for by default.
const TraceIDLabel = "trace_id"

// observe records v, with an exemplar when traceID is set.
func observe(o prometheus.Observer, v float64, traceID string) {
	if traceID == "" {
		o.Observe(v)
		return
	}
	o.(prometheus.ExemplarObserver).ObserveWithExemplar(v, prometheus.Labels{TraceIDLabel: traceID})
}

// Methods are the HTTP methods kept as label values; anything else is "OTHER", so a
// client inventing methods cannot create series.
var Methods = []string{"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}

// MethodLabel maps a request method to its label value.
func MethodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// Unmatched is the path label of requests that matched no route.
const Unmatched = "unmatched"

// HTTP holds the RED metrics of the HTTP server.
type HTTP struct {
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	requestSize  *prometheus.HistogramVec
	responseSize *prometheus.HistogramVec
	panics       *prometheus.CounterVec
}

// NewHTTP creates the HTTP metrics and registers them on reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	m := &HTTP{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "http_request_duration_seconds",
			Help:                            "Time from the start of a request until its response was written, by route template, method and status code.",
			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     nativeFactor,
			NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
			NativeHistogramMinResetDuration: nativeMinResetDur,
			NativeHistogramMaxExemplars:     nativeMaxExemplars,
		}, []string{"method", "path", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "Requests currently being served.",
		}),
		requestSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_size_bytes",
			Help:    "Size of request bodies (Content-Length; 0 when absent), by route template and method.",
			Buckets: SizeBuckets,
		}, []string{"method", "path"}),
		responseSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_response_size_bytes",
			Help:    "Size of response bodies written, by route template and method.",
			Buckets: SizeBuckets,
		}, []string{"method", "path"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_request_panics_total",
			Help: "Handler panics recovered by the instrumentation, by route template.",
		}, []string{"path"}),
	}
	reg.MustRegister(m.duration, m.inFlight, m.requestSize, m.responseSize, m.panics)
	return m
}

// Route returns the per-route recorder for one route template. statuses lists the
// codes to create at zero for each of methods, so that rates and ratios over them (the
// SLO rules' 5xx counts, for example) never see a missing series.
func (m *HTTP) Route(path string, methods []string, statuses []int) *Route {
	r := &Route{m: m, path: path, panics: m.panics.WithLabelValues(path)}
	for _, method := range methods {
		for _, code := range statuses {
			r.series(method, code)
		}
	}
	return r
}

// Route records the requests of one route.
type Route struct {
	m      *HTTP
	path   string
	panics prometheus.Counter
	// observers caches the series of each (method, status) seen, so a request costs a
	// map load instead of three label-hashing lookups. Both keys are bounded (methods
	// by MethodLabel, statuses by what the handlers send).
	observers sync.Map // routeKey -> *routeSeries
}

type routeKey struct {
	method string
	status int
}

type routeSeries struct {
	duration, requestSize, responseSize prometheus.Observer
}

func (r *Route) series(method string, status int) *routeSeries {
	k := routeKey{method, status}
	if s, ok := r.observers.Load(k); ok {
		return s.(*routeSeries)
	}
	s := &routeSeries{
		duration:     r.m.duration.WithLabelValues(method, r.path, strconv.Itoa(status)),
		requestSize:  r.m.requestSize.WithLabelValues(method, r.path),
		responseSize: r.m.responseSize.WithLabelValues(method, r.path),
	}
	actual, _ := r.observers.LoadOrStore(k, s)
	return actual.(*routeSeries)
}

// Start marks a request as in flight; call Done when it ends.
func (r *Route) Start() { r.m.inFlight.Inc() }

// Done records a finished request. method must already be a label value (MethodLabel).
// traceID, when not empty, is the id of the request's sampled trace: the duration is then
// recorded with an exemplar {trace_id="..."}, which leads from a latency bucket to the trace.
func (r *Route) Done(method string, status int, elapsed time.Duration, reqSize, respSize int64, traceID string) {
	r.m.inFlight.Dec()
	s := r.series(method, status)
	observe(s.duration, elapsed.Seconds(), traceID)
	s.requestSize.Observe(float64(reqSize))
	s.responseSize.Observe(float64(respSize))
}

// Panicked counts a recovered panic.
func (r *Route) Panicked() { r.panics.Inc() }
