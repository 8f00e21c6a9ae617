package api

// Benchmarks of one request through the instrumentation (docs/performance.md).
//
// BenchmarkMiddleware wraps the same bare map handler (internal/benchref) in each
// instrumentation under comparison, so the differences between its columns are the cost
// of the instrumentation alone:
//
//	chain=bare      no instrumentation
//	chain=observe-nometrics  our middleware with metrics and access log off
//	chain=observe   our middleware with metrics (what api.New puts on every route)
//	chain=observe+log  the same with the JSON access log (to io.Discard)
//	chain=observe+log+trace1     the same with tracing on, every request sampled (spans to a
//	                             batch processor and a discarding exporter)
//	chain=observe+log+trace0.01  the same at the default ratio (tracing.DefaultSampleRatio)
//	chain=promhttp  client_golang's InFlight+Duration+Counter+ResponseSize, same labels
//
// otelhttp with the OpenTelemetry Prometheus exporter was a column until commit 94bc9ab (its figures stay in
// docs/performance.md); it left so that neither enters the service's go.mod for one benchmark. Check out
// that commit to measure it again.
//
// BenchmarkServer runs the whole API (api.New over the memory store) in the
// configurations the binary can run in, so handler, routing and store costs show too.
//
// Compare columns with: benchstat -col /chain new.txt (or -col /config).

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/benchref"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

const benchID = "bench-object"

var benchPayload = bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB

// benchWriter is a ResponseWriter that keeps only what the benchmark checks, so the
// fixed cost per iteration is small next to what is measured.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *benchWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// benchBody is a request body that can be rewound without allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// benchOp is one request kind: GET or PUT of 1 KiB to an existing id.
type benchOp struct {
	name   string
	method string
	status int // expected status
	size   int // expected response body size
}

var benchOps = []benchOp{
	{name: "GET", method: http.MethodGet, status: http.StatusOK, size: len(benchPayload)},
	{name: "PUT", method: http.MethodPut, status: http.StatusNoContent},
}

// runBench serves op through h b.N times, reusing one request and writer. It checks the
// answer first, so a broken chain fails instead of measuring error responses.
func runBench(b *testing.B, h http.Handler, op benchOp) {
	b.Helper()
	req := httptest.NewRequest(op.method, "/api/buckets/"+benchID, nil)
	body := &benchBody{}
	if op.method == http.MethodPut {
		req.ContentLength = int64(len(benchPayload))
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	w := &benchWriter{h: http.Header{}}
	serve := func() {
		w.reset()
		if op.method == http.MethodPut {
			body.Reset(benchPayload)
			req.Body = body
		}
		h.ServeHTTP(w, req)
	}
	serve()
	if w.status != op.status || w.n != op.size {
		b.Fatalf("%s: status %d, %d bytes; want %d, %d", op.name, w.status, w.n, op.status, op.size)
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		serve()
		n++
	}
	// CPU time of the whole process (GC included) per request: on a shared machine it
	// moves far less than wall time, which counts time spent descheduled.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/op")
}

// processCPU returns the user+system CPU time the process has used, in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// requireSeries fails unless reg exposes a metric family with name (the instrumentation
// under test really recorded something).
func requireSeries(b *testing.B, reg *prometheus.Registry, name string) {
	b.Helper()
	if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
		b.Fatalf("no %s series recorded (%v)", name, err)
	}
}

// benchStatuses are the codes our routes create at zero for the bucket path.
var benchStatuses = []int{200, 201, 204, 304, 400, 404, 413, 500, 503}

// promhttpChain is client_golang's documented instrumentation with our label set: the
// route template curried into path, method and code filled in by promhttp (it insists
// on the label name "code"; ours is "status").
func promhttpChain(reg prometheus.Registerer) func(method, path string, h http.Handler) http.Handler {
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "http_requests_in_flight", Help: "h"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "h", Buckets: metrics.DurationBuckets,
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160,
	}, []string{"method", "path", "code"})
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "h"},
		[]string{"method", "path", "code"})
	respSize := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_response_size_bytes", Help: "h", Buckets: metrics.SizeBuckets,
	}, []string{"method", "path"})
	reg.MustRegister(inFlight, duration, counter, respSize)
	return func(_, path string, h http.Handler) http.Handler {
		l := prometheus.Labels{"path": path}
		return promhttp.InstrumentHandlerInFlight(inFlight,
			promhttp.InstrumentHandlerDuration(duration.MustCurryWith(l),
				promhttp.InstrumentHandlerCounter(counter.MustCurryWith(l),
					promhttp.InstrumentHandlerResponseSize(respSize.MustCurryWith(l), h))))
	}
}

// observeChain is our middleware as api.New installs it, around any handler.
func observeChain(m *metrics.HTTP, log *slog.Logger, withLog bool) func(method, path string, h http.Handler) http.Handler {
	return tracedChain(m, log, withLog, nil, 1)
}

// tracedChain is observeChain with tracing through tp (nil: off).
func tracedChain(m *metrics.HTTP, log *slog.Logger, withLog bool, tp trace.TracerProvider, headRatio float64) func(method, path string, h http.Handler) http.Handler {
	return func(method, path string, h http.Handler) http.Handler {
		var al *accessLog
		if withLog {
			al = newAccessLog(io.Discard)
		}
		return observe(m.Route(path, []string{method}, benchStatuses), log, al, newServerTracer(tp, headRatio), path)(h)
	}
}

// benchTracerProvider is the provider the binary builds with tracing.WithHeadSampling: it
// samples every root it is asked for (observe draws the ratio first) and exports through
// the SDK's batch processor to an exporter that drops the spans.
func benchTracerProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

//nolint:sloglint // the benchmark measures the JSON encoding cost, which slog.DiscardHandler skips
func jsonDiscardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func BenchmarkMiddleware(b *testing.B) {
	type chain struct {
		name string
		// build returns the handler, and the registry and metric it must have recorded in
		// (nil registry: nothing to check).
		build func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string)
	}
	chains := []chain{
		{"bare", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			return s.Handler(nil), nil, ""
		}},
		{"observe-nometrics", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			// Request id, panic recovery and status capture only: -metrics=false -access-log=false.
			return s.Handler(func(_, path string, h http.Handler) http.Handler {
				return observe(nil, jsonDiscardLogger(), nil, nil, path)(h)
			}), nil, ""
		}},
		{"observe", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			reg := prometheus.NewRegistry()
			return s.Handler(observeChain(metrics.NewHTTP(reg), jsonDiscardLogger(), false)), reg, "http_request_duration_seconds"
		}},
		{"observe+log", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			reg := prometheus.NewRegistry()
			return s.Handler(observeChain(metrics.NewHTTP(reg), jsonDiscardLogger(), true)), reg, "http_request_duration_seconds"
		}},
		{"observe+log+trace1", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			reg := prometheus.NewRegistry()
			tp := benchTracerProvider(b)
			return s.Handler(tracedChain(metrics.NewHTTP(reg), jsonDiscardLogger(), true, tp, 1)), reg, "http_request_duration_seconds"
		}},
		{"observe+log+trace0.01", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			reg := prometheus.NewRegistry()
			tp := benchTracerProvider(b)
			return s.Handler(tracedChain(metrics.NewHTTP(reg), jsonDiscardLogger(), true, tp, tracing.DefaultSampleRatio)), reg, "http_request_duration_seconds"
		}},
		{"promhttp", func(b *testing.B, s *benchref.Store) (http.Handler, *prometheus.Registry, string) {
			reg := prometheus.NewRegistry()
			return s.Handler(promhttpChain(reg)), reg, "http_request_duration_seconds"
		}},
	}
	for _, op := range benchOps {
		for _, c := range chains {
			b.Run("op="+op.name+"/chain="+c.name, func(b *testing.B) {
				s := benchref.New()
				s.Set(benchID, benchPayload)
				h, reg, name := c.build(b, s)
				runBench(b, h, op)
				if reg != nil {
					requireSeries(b, reg, name)
				}
			})
		}
	}
}

func BenchmarkServer(b *testing.B) {
	type config struct {
		name         string
		storeMetrics bool // metrics.InstrumentStore, which main always applies
		httpMetrics  bool // -metrics
		accessLog    bool // -access-log
	}
	configs := []config{
		{name: "none"},
		{name: "log", storeMetrics: true, accessLog: true}, // -metrics=false
		{name: "metrics", storeMetrics: true, httpMetrics: true},
		{name: "default", storeMetrics: true, httpMetrics: true, accessLog: true},
	}
	for _, op := range benchOps {
		for _, c := range configs {
			b.Run("op="+op.name+"/config="+c.name, func(b *testing.B) {
				reg := metrics.NewRegistry("bench", "bench")
				var store storage.Store = memory.New()
				if c.storeMetrics {
					store = metrics.InstrumentStore(store, "memory", reg)
				}
				if _, err := store.Put(b.Context(), benchID, "application/octet-stream", benchPayload, storage.Condition{}); err != nil {
					b.Fatal(err)
				}
				o := Options{
					Store:          store,
					MaxObjectSize:  10 << 20,
					Log:            jsonDiscardLogger(),
					AccessLog:      discardIf(c.accessLog),
					MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
				}
				if c.httpMetrics {
					o.Metrics = metrics.NewHTTP(reg)
				}
				runBench(b, New(o), op)
				if c.httpMetrics {
					requireSeries(b, reg, "http_request_duration_seconds")
				}
			})
		}
	}
}

// BenchmarkAccessLog prices the access-log line alone, as observe writes it, and cheaper
// encodings of the same fields (for the suggestions in docs/performance.md).
func BenchmarkAccessLog(b *testing.B) {
	log := jsonDiscardLogger()
	ctx := b.Context()
	const elapsed = 1234567 // ns
	al := newAccessLog(io.Discard)
	variants := []struct {
		name string
		fn   func()
	}{
		{"current", func() { // 8 attrs, float duration: as in observe
			log.LogAttrs(ctx, slog.LevelInfo, "request",
				slog.String("method", "GET"), slog.String("path", BucketPath),
				slog.String("uri", "/api/buckets/obj-1"), slog.Int("status", 200),
				slog.Int64("bytes", 1024), slog.Float64("duration_seconds", float64(elapsed)/1e9),
				slog.String("request_id", "0123456789abcdef"), slog.String("remote", "127.0.0.1:54321"))
		}},
		{"int-duration", func() { // the same with the duration as an integer
			log.LogAttrs(ctx, slog.LevelInfo, "request",
				slog.String("method", "GET"), slog.String("path", BucketPath),
				slog.String("uri", "/api/buckets/obj-1"), slog.Int("status", 200),
				slog.Int64("bytes", 1024), slog.Int64("duration_us", elapsed/1000),
				slog.String("request_id", "0123456789abcdef"), slog.String("remote", "127.0.0.1:54321"))
		}},
		{"int-duration-5attrs", func() { // at most 5 attrs fit slog.Record without a slice
			log.LogAttrs(ctx, slog.LevelInfo, "request",
				slog.String("method", "GET"), slog.String("path", BucketPath),
				slog.Int("status", 200), slog.Int64("duration_us", elapsed/1000),
				slog.String("request_id", "0123456789abcdef"))
		}},
		{"accesslog", func() { // what observe writes now: internal/api/accesslog.go
			al.write(time.Now(), accessEntry{method: "GET", path: BucketPath, uri: "/api/buckets/obj-1",
				status: 200, bytes: 1024, duration: elapsed, requestID: "0123456789abcdef", remote: "127.0.0.1:54321"})
		}},
	}
	for _, v := range variants {
		b.Run("variant="+v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU(b)
			n := 0
			for b.Loop() {
				v.fn()
				n++
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// discardIf is io.Discard when on, else nil (access log off).
func discardIf(on bool) io.Writer {
	if on {
		return io.Discard
	}
	return nil
}
