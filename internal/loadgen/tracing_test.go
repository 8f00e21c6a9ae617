package loadgen

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
)

// TestClientSpans: with the OTEL_* variables set, every request carries a traceparent,
// its client span reaches the OTLP endpoint (flushed at the end of the run) in the same
// trace, and the latency histogram has exemplars naming those traces.
func TestClientSpans(t *testing.T) {
	var mu sync.Mutex
	spans := map[string]string{} // trace id -> span name, as exported
	sent := map[string]bool{}    // trace ids of the traceparents the API received
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					spans[hex.EncodeToString(s.GetTraceId())] = s.GetName()
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer otlp.Close()
	target := apitest.Start(t, apitest.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tp := r.Header.Get("Traceparent"); strings.HasPrefix(r.URL.Path, "/api/") {
				parts := strings.Split(tp, "-")
				if len(parts) != 4 || parts[3] != "01" {
					t.Errorf("request without a sampled traceparent: %q", tp)
				} else {
					mu.Lock()
					sent[parts[1]] = true
					mu.Unlock()
				}
			}
			next.ServeHTTP(w, r)
		})
	}})

	cfg, err := ParseConfig([]string{"-target", target.URL, "-metrics-address", "", "-mode", "rate", "-rate", "40",
		"-duration", "250ms", "-mix", "put=1,get=1"}, func(k string) string {
		return map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL,
			"OTEL_TRACES_SAMPLER":         "always_on",
		}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	sum, err := runWith(t.Context(), cfg, io.Discard, m)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if int64(len(sent)) != sum.Requests || sum.Requests == 0 {
		t.Errorf("%d distinct traces sent for %d requests", len(sent), sum.Requests)
	}
	for id := range sent {
		if name := spans[id]; name != "PUT /api/buckets/{id}" && name != "GET /api/buckets/{id}" {
			t.Errorf("trace %s: exported client span %q", id, name)
		}
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := 0
	for _, mf := range mfs {
		if mf.GetName() != "loadgen_request_duration_seconds" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, e := range mm.GetHistogram().GetExemplars() {
				for _, l := range e.GetLabel() {
					if l.GetName() == "trace_id" && sent[l.GetValue()] {
						exemplars++
					}
				}
			}
		}
	}
	if exemplars == 0 {
		t.Error("no exemplar of loadgen_request_duration_seconds names a trace that was sent")
	}
}
