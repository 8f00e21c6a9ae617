package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/logging"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
	"github.com/sre-instrumentation/storage-api/internal/testkit"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// syncBuffer is the log both the logger and the test read: testkit's buffer, read as JSON lines.
type syncBuffer struct{ testkit.SyncBuffer }

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// tracedServer is the API as main builds it with tracing on: store spans outside the
// store metrics, the JSON logger with trace ids, the access log, and the spans going to
// an in-memory exporter.
type tracedServer struct {
	handler http.Handler
	reg     *prometheus.Registry
	spans   *tracetest.InMemoryExporter
	log     *syncBuffer // error log and access log, as in the binary
}

func newTracedServer(t *testing.T, sampler sdktrace.Sampler, store storage.Store, faults fault.Config) *tracedServer {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reg := metrics.NewRegistry("test", "test")
	if store == nil {
		store = memory.New()
	}
	store = tracing.InstrumentStore(metrics.InstrumentStore(store, "memory", reg), "memory", tp)
	buf := &syncBuffer{}
	h := api.New(api.Options{
		Store:          store,
		MaxObjectSize:  1 << 20,
		Log:            slog.New(logging.TraceHandler{Handler: slog.NewJSONHandler(buf, nil)}),
		AccessLog:      buf,
		Metrics:        metrics.NewHTTP(reg),
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Faults:         fault.New(faults, reg),
		Tracing:        tp,
	})
	return &tracedServer{handler: h, reg: reg, spans: exp, log: buf}
}

func (s *tracedServer) do(method, target, body string, header map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.Header.Set("User-Agent", "tracing-test")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

func attrs(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

func TestServerSpan(t *testing.T) {
	s := newTracedServer(t, sdktrace.AlwaysSample(), nil, fault.Config{})
	if rec := s.do("PUT", "/api/buckets/obj-1", "hello", nil); rec.Code != 201 {
		t.Fatalf("PUT: %d", rec.Code)
	}
	spans := s.spans.GetSpans()
	server := spanNamed(t, spans, "PUT /api/buckets/{id}")
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("kind = %v, want server", server.SpanKind)
	}
	if server.Parent.IsValid() {
		t.Errorf("a request without traceparent got parent %v", server.Parent)
	}
	a := attrs(server.Attributes)
	want := map[string]any{
		"http.request.method":       "PUT",
		"http.route":                "/api/buckets/{id}",
		"url.path":                  "/api/buckets/obj-1",
		"url.scheme":                "http",
		"server.address":            "example.com",
		"client.address":            "192.0.2.1",
		"network.protocol.version":  "1.1",
		"user_agent.original":       "tracing-test",
		"http.response.status_code": int64(201),
		"http.request.body.size":    int64(5),
	}
	for k, v := range want {
		if got, ok := a[k]; !ok || got.AsInterface() != v {
			t.Errorf("attribute %s = %v, want %v", k, got.AsInterface(), v)
		}
	}
	if server.Status.Code != codes.Unset {
		t.Errorf("status = %v, want unset for a 201", server.Status)
	}
	store := spanNamed(t, spans, "storage put")
	if store.Parent.SpanID() != server.SpanContext.SpanID() || store.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Errorf("store span is not a child of the server span")
	}
	if got := attrs(store.Attributes)["storage.result"].AsString(); got != "ok" {
		t.Errorf("storage.result = %q", got)
	}

	// The access-log line and the exemplars carry the trace id.
	traceID, spanID := server.SpanContext.TraceID().String(), server.SpanContext.SpanID().String()
	lines := s.log.lines(t)
	if len(lines) != 1 || lines[0]["trace_id"] != traceID || lines[0]["span_id"] != spanID {
		t.Errorf("access log %v: want trace_id %s span_id %s", lines, traceID, spanID)
	}
	if got := exemplarTraceIDs(t, s.reg, "http_request_duration_seconds"); len(got) != 1 || got[0] != traceID {
		t.Errorf("http_request_duration_seconds exemplars %q, want [%s]", got, traceID)
	}
	if got := exemplarTraceIDs(t, s.reg, "storage_operation_duration_seconds"); len(got) != 1 || got[0] != traceID {
		t.Errorf("storage_operation_duration_seconds exemplars %q, want [%s]", got, traceID)
	}
	// What Prometheus scrapes: the OpenMetrics text shows the exemplar on a bucket line.
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}).ServeHTTP(rec, req)
	for _, metric := range []string{"http_request_duration_seconds_bucket", "storage_operation_duration_seconds_bucket"} {
		found := false
		for l := range strings.SplitSeq(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, metric+"{") && strings.Contains(l, `# {trace_id="`+traceID+`"}`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s line with exemplar trace_id %s in the OpenMetrics exposition", metric, traceID)
		}
	}
}

func TestServerSpanNames(t *testing.T) {
	s := newTracedServer(t, sdktrace.AlwaysSample(), nil, fault.Config{})
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/api/buckets/none", "GET /api/buckets/{id}"},
		{"HEAD", "/api/buckets/none", "HEAD /api/buckets/{id}"},
		{"DELETE", "/api/buckets/none", "DELETE /api/buckets/{id}"},
		{"POST", "/api/buckets/x", "POST /api/buckets/{id}"}, // 405
		{"GET", "/nowhere", "GET"},                           // no route: no template
		{"BREW", "/nowhere", "HTTP"},                         // unknown method
		// An operational route is traced when a caller asks (see TestOperationalRoutes).
		{"GET", "/healthz", "GET /healthz"},
	} {
		s.spans.Reset()
		var header map[string]string
		if tc.target == "/healthz" {
			header = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		}
		s.do(tc.method, tc.target, "", header)
		span := spanNamed(t, s.spans.GetSpans(), tc.want)
		a := attrs(span.Attributes)
		if _, ok := a["http.route"]; ok != (tc.target != "/nowhere") {
			t.Errorf("%s %s: http.route present = %v", tc.method, tc.target, ok)
		}
		if tc.method == "BREW" && (a["http.request.method"].AsString() != "_OTHER" || a["http.request.method_original"].AsString() != "BREW") {
			t.Errorf("unknown method attributes: %v", a)
		}
	}
}

// failingStore fails every operation with an internal error.
type failingStore struct{ storage.Store }

func (failingStore) Get(context.Context, string) (*storage.Object, error) {
	return nil, errors.New("disk on fire")
}

func TestServerSpanErrors(t *testing.T) {
	t.Run("store failure", func(t *testing.T) {
		s := newTracedServer(t, sdktrace.AlwaysSample(), failingStore{memory.New()}, fault.Config{})
		if rec := s.do("GET", "/api/buckets/x", "", nil); rec.Code != 500 {
			t.Fatalf("GET: %d", rec.Code)
		}
		spans := s.spans.GetSpans()
		server := spanNamed(t, spans, "GET /api/buckets/{id}")
		if server.Status.Code != codes.Error || attrs(server.Attributes)["error.type"].AsString() != "500" {
			t.Errorf("500: status %v, attributes %v", server.Status, server.Attributes)
		}
		store := spanNamed(t, spans, "storage get")
		if store.Status.Code != codes.Error || len(store.Events) == 0 {
			t.Errorf("failed store span: status %v, events %v", store.Status, store.Events)
		}
		// The error line and the access line both carry the ids.
		traceID := server.SpanContext.TraceID().String()
		var msgs []string
		for _, l := range s.log.lines(t) {
			msgs = append(msgs, l["msg"].(string))
			if l["trace_id"] != traceID || l["span_id"] != server.SpanContext.SpanID().String() {
				t.Errorf("log line without the trace: %v", l)
			}
		}
		if strings.Join(msgs, ",") != "storage failure,request" {
			t.Errorf("log lines %q, want the error then the access line", msgs)
		}
	})
	t.Run("not found is not an error", func(t *testing.T) {
		s := newTracedServer(t, sdktrace.AlwaysSample(), nil, fault.Config{})
		s.do("GET", "/api/buckets/x", "", nil)
		spans := s.spans.GetSpans()
		if st := spanNamed(t, spans, "GET /api/buckets/{id}").Status; st.Code != codes.Unset {
			t.Errorf("404 server span status %v, want unset", st)
		}
		store := spanNamed(t, spans, "storage get")
		if store.Status.Code != codes.Unset || attrs(store.Attributes)["storage.result"].AsString() != "not_found" {
			t.Errorf("not-found store span: %v %v", store.Status, store.Attributes)
		}
	})
	t.Run("injected fault", func(t *testing.T) {
		s := newTracedServer(t, sdktrace.AlwaysSample(), nil, fault.Config{ErrorRatio: 1})
		if rec := s.do("GET", "/api/buckets/x", "", nil); rec.Code != 503 {
			t.Fatalf("GET: %d", rec.Code)
		}
		server := spanNamed(t, s.spans.GetSpans(), "GET /api/buckets/{id}")
		if server.Status.Code != codes.Error || !attrs(server.Attributes)["fault.error"].AsBool() {
			t.Errorf("injected 503: status %v, attributes %v", server.Status, server.Attributes)
		}
		if len(server.Events) != 1 || server.Events[0].Name != "fault injected: error" {
			t.Errorf("events %v", server.Events)
		}
	})
}

func TestTracePropagation(t *testing.T) {
	const (
		remoteTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		remoteSpan  = "00f067aa0ba902b7"
	)
	t.Run("sampled parent is continued", func(t *testing.T) {
		// The root sampler never samples: only the parent's decision can record this.
		s := newTracedServer(t, sdktrace.ParentBased(sdktrace.NeverSample()), nil, fault.Config{})
		s.do("PUT", "/api/buckets/a", "x", map[string]string{
			"traceparent": "00-" + remoteTrace + "-" + remoteSpan + "-01",
			"tracestate":  "vendor=value",
		})
		spans := s.spans.GetSpans()
		server := spanNamed(t, spans, "PUT /api/buckets/{id}")
		if got := server.SpanContext.TraceID().String(); got != remoteTrace {
			t.Errorf("trace id %s, want the caller's %s", got, remoteTrace)
		}
		if got := server.Parent.SpanID().String(); got != remoteSpan || !server.Parent.IsRemote() {
			t.Errorf("parent %s (remote %v), want the caller's span %s", got, server.Parent.IsRemote(), remoteSpan)
		}
		if got := server.SpanContext.TraceState().Get("vendor"); got != "value" {
			t.Errorf("tracestate vendor=%q, want value", got)
		}
		spanNamed(t, spans, "storage put")
		if got := s.log.lines(t)[0]["trace_id"]; got != remoteTrace {
			t.Errorf("access log trace_id %v", got)
		}
	})
	t.Run("unsampled parent is not recorded", func(t *testing.T) {
		// The root sampler always samples: only the parent's decision can drop this.
		s := newTracedServer(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), nil, fault.Config{})
		s.do("PUT", "/api/buckets/a", "x", map[string]string{
			"traceparent": "00-" + remoteTrace + "-" + remoteSpan + "-00",
		})
		if spans := s.spans.GetSpans(); len(spans) != 0 {
			t.Errorf("unsampled request recorded %d spans", len(spans))
		}
		if l := s.log.lines(t)[0]; l["trace_id"] != nil || l["span_id"] != nil {
			t.Errorf("access log of an unsampled request names a trace: %v", l)
		}
		if got := exemplarTraceIDs(t, s.reg, "http_request_duration_seconds"); len(got) != 0 {
			t.Errorf("exemplars of an unsampled request: %q", got)
		}
	})
	t.Run("malformed traceparent starts a new trace", func(t *testing.T) {
		s := newTracedServer(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), nil, fault.Config{})
		s.do("GET", "/api/buckets/a", "", map[string]string{"traceparent": "00-zz-yy-01"})
		server := spanNamed(t, s.spans.GetSpans(), "GET /api/buckets/{id}")
		if server.Parent.IsValid() {
			t.Errorf("malformed traceparent became parent %v", server.Parent)
		}
	})
}

// TestOperationalRoutes: probes and scrapes start no trace of their own, whatever the
// sampler (one root trace per scrape and probe would be noise, and the e2e test found
// them mixed into its traces); a caller that sends a sampled traceparent still gets its
// trace continued through them.
func TestOperationalRoutes(t *testing.T) {
	s := newTracedServer(t, sdktrace.AlwaysSample(), nil, fault.Config{})
	for _, target := range []string{"/healthz", "/readyz", "/metrics"} {
		s.spans.Reset()
		for _, header := range []map[string]string{nil, {"traceparent": "00-zz-yy-01"}} {
			if rec := s.do("GET", target, "", header); rec.Code != http.StatusOK {
				t.Fatalf("GET %s: %d", target, rec.Code)
			}
		}
		if spans := s.spans.GetSpans(); len(spans) != 0 {
			t.Errorf("GET %s without a valid traceparent recorded %d spans", target, len(spans))
		}
		s.do("GET", target, "", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
		if span := spanNamed(t, s.spans.GetSpans(), "GET "+target); span.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("GET %s with a sampled traceparent: trace %s, want the caller's", target, span.SpanContext.TraceID())
		}
	}
	// The API route still starts its own traces.
	s.spans.Reset()
	s.do("GET", "/api/buckets/none", "", nil)
	spanNamed(t, s.spans.GetSpans(), "GET /api/buckets/{id}")
}

// exemplarTraceIDs returns the trace_id of every exemplar (classic buckets and native
// histogram) of the metric family name.
func exemplarTraceIDs(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	add := func(e *dto.Exemplar) {
		for _, l := range e.GetLabel() {
			if l.GetName() == "trace_id" {
				ids = append(ids, l.GetValue())
			}
		}
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var classic, native []string
			before := len(ids)
			for _, b := range m.GetHistogram().GetBucket() {
				if e := b.GetExemplar(); e != nil {
					add(e)
				}
			}
			classic = ids[before:]
			before = len(ids)
			for _, e := range m.GetHistogram().GetExemplars() {
				add(e)
			}
			native = ids[before:]
			// Each sampled observation must show in both forms; report it once.
			if strings.Join(classic, ",") != strings.Join(native, ",") {
				t.Errorf("%s: classic exemplars %q, native %q", name, classic, native)
			}
			ids = ids[:before]
		}
	}
	return ids
}

// TestHeadSampling: with a head ratio (tracing.WithHeadSampling), a request without
// traceparent that loses the draw gets no span, no exemplar and no log ids, while a
// caller's sampled traceparent is still continued.
func TestHeadSampling(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	reg := metrics.NewRegistry("test", "test")
	buf := &syncBuffer{}
	h := api.New(api.Options{
		Store: memory.New(), MaxObjectSize: 1 << 20, AccessLog: buf, Metrics: metrics.NewHTTP(reg),
		Tracing: tp, TraceHeadRatio: 1e-12, // loses the draw, for all practical purposes
	})
	for range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/buckets/x", nil))
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans for requests that lost the head draw", n)
	}
	for _, l := range buf.lines(t) {
		if l["trace_id"] != nil {
			t.Errorf("access line of an unsampled request names a trace: %v", l)
		}
	}
	if got := exemplarTraceIDs(t, reg, "http_request_duration_seconds"); len(got) != 0 {
		t.Errorf("exemplars %q", got)
	}
	req := httptest.NewRequest("GET", "/api/buckets/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if spans := exp.GetSpans(); len(spans) != 1 || spans[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("a sampled caller's trace was not continued: %v", spans)
	}
}
