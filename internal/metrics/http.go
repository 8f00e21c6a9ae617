// Package metrics defines the service's Prometheus metrics. Names and labels are an
// interface: dashboards, alert rules and tests depend on them (docs/metrics.md).
//
// Everything is registered on a registry the caller passes in; nothing uses the global
// default registry, so tests and benchmarks can build as many servers as they like.
package metrics

import (
	"strconv"
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
)

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
		m.requestSize.WithLabelValues(method, path)
		m.responseSize.WithLabelValues(method, path)
		for _, code := range statuses {
			m.duration.WithLabelValues(method, path, strconv.Itoa(code))
		}
	}
	return r
}

// Route records the requests of one route.
type Route struct {
	m      *HTTP
	path   string
	panics prometheus.Counter
}

// Start marks a request as in flight; call Done when it ends.
func (r *Route) Start() { r.m.inFlight.Inc() }

// Done records a finished request. method must already be a label value (MethodLabel).
func (r *Route) Done(method string, status int, elapsed time.Duration, reqSize, respSize int64) {
	r.m.inFlight.Dec()
	r.m.duration.WithLabelValues(method, r.path, statusLabel(status)).Observe(elapsed.Seconds())
	r.m.requestSize.WithLabelValues(method, r.path).Observe(float64(reqSize))
	r.m.responseSize.WithLabelValues(method, r.path).Observe(float64(respSize))
}

// Panicked counts a recovered panic.
func (r *Route) Panicked() { r.panics.Inc() }

// statusLabel avoids strconv for the common codes (no allocation on the hot path).
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 304:
		return "304"
	case 400:
		return "400"
	case 404:
		return "404"
	case 405:
		return "405"
	case 413:
		return "413"
	case 499:
		return "499"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
