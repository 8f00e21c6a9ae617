// Package apitest gives tests the real storage API: internal/api's handler over the memory
// store, with the HTTP and store metrics and the fault injector wired as cmd/storage-api
// wires them, on a registry of its own. The API's clients (loadgen) are tested against it,
// and read what the server saw from its own metrics, so no second implementation of the
// API can drift from the first.
package apitest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/config"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
)

// Options are what a test may set; everything else is as storage-api runs by default.
type Options struct {
	// MaxObjectSize is the largest object accepted; 0 means storage-api's default.
	MaxObjectSize int64
	// Fault injects errors and latency into the /api routes, as the -fault-* flags
	// (FAULT_ERROR_RATIO, ...) do; the zero value injects nothing.
	Fault fault.Config
	// ShuttingDown, when set, is asked by every /readyz: readiness fails while it reports
	// true, as it does once storage-api's shutdown began (api.Options.ShuttingDown).
	ShuttingDown func() bool
	// Wrap, when set, wraps the handler Start serves: for a test that watches or delays
	// requests before the API gets them.
	Wrap func(http.Handler) http.Handler
}

// API is the storage API's handler and what a test reads behind it.
type API struct {
	http.Handler
	// Registry holds every metric the API's /metrics serves.
	Registry *prometheus.Registry
	// Store is the API's store, instrumented as the handler sees it.
	Store storage.Store
}

// New builds the API's handler over a new memory store.
func New(o Options) *API {
	reg := metrics.NewRegistry("test", "test")
	store := metrics.InstrumentStore(memory.New(), "memory", reg)
	size := o.MaxObjectSize
	if size == 0 {
		size = config.DefaultMaxObjectSize
	}
	h := api.New(api.Options{
		Store:         store,
		MaxObjectSize: size,
		Log:           slog.New(slog.DiscardHandler),
		// On by default in storage-api, so its cost and code path are part of every test.
		AccessLog:      io.Discard,
		Metrics:        metrics.NewHTTP(reg),
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}),
		// Always registered, as storage-api does; api.New installs it only when enabled.
		Faults:       fault.New(o.Fault, reg),
		ShuttingDown: o.ShuttingDown,
	})
	return &API{Handler: h, Registry: reg, Store: store}
}

// Server is the API served over HTTP on 127.0.0.1 for the length of a test.
type Server struct {
	*API
	// URL is the server's base URL, without a trailing slash.
	URL string
	srv *httptest.Server
}

// Start serves New(o), wrapped by o.Wrap, until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	a := New(o)
	var h http.Handler = a
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Server{API: a, URL: srv.URL, srv: srv}
}

// Close stops the server once the requests in flight have finished. Closing again does
// nothing.
func (s *Server) Close() { s.srv.Close() }

// Counts closes the server and returns the requests it answered on path (a route template
// such as api.BucketPath or "/readyz"), by method and status code, as its
// http_request_duration_seconds counts them. Closing comes first because the API counts a
// request once its response is written, which can be after the client has read it: only
// a closed server has counted every request it answered.
func (s *Server) Counts(t testing.TB, path string) map[string]map[string]int64 {
	t.Helper()
	s.Close()
	mfs, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]map[string]int64{}
	for _, mf := range mfs {
		if mf.GetName() != "http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			n := int64(m.GetHistogram().GetSampleCount())
			// Series created at zero up front (for the alert rules) are no requests.
			if labels["path"] != path || n == 0 {
				continue
			}
			if counts[labels["method"]] == nil {
				counts[labels["method"]] = map[string]int64{}
			}
			counts[labels["method"]][labels["status"]] = n
		}
	}
	return counts
}
