package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// otlpReceiver is an OTLP/HTTP traces endpoint that keeps the span names and trace ids
// it was sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string]string // span name -> hex trace id
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				o.spans[s.GetName()] = hexString(s.GetTraceId())
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, digits[c>>4], digits[c&0xf])
	}
	return string(s)
}

// TestTracingFlushedAtShutdown: the binary configured only by OTEL_* variables continues
// the caller's trace, and, with a batch delay longer than the test, exports the spans
// only because SIGTERM flushes them.
func TestTracingFlushedAtShutdown(t *testing.T) {
	recv := &otlpReceiver{spans: map[string]string{}}
	collector := httptest.NewServer(recv)
	defer collector.Close()
	p := startProc(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL,
		"OTEL_BSP_SCHEDULE_DELAY=600000",
		"OTEL_SERVICE_NAME=storage-api-test",
	}, "-listen-address", "127.0.0.1:0", "-storage", "bolt", "-data-dir", t.TempDir())
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	h := http.Header{"Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}}
	if status, _, _, err := do(newClient(1), http.MethodPut, p.url+"/api/buckets/traced", []byte("x"), h); err != nil || status != 201 {
		t.Fatalf("PUT: %d %v", status, err)
	}
	recv.mu.Lock()
	early := len(recv.spans)
	recv.mu.Unlock()
	if early != 0 {
		t.Fatalf("spans exported before shutdown (%d): the batch delay was not applied", early)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, name := range []string{"PUT /api/buckets/{id}", "storage put", "bolt commit wait"} {
		if got, ok := recv.spans[name]; !ok || got != traceID {
			t.Errorf("span %q: trace %q (exported: %v), want %s", name, got, recv.spans, traceID)
		}
	}
	// The access-log line names the trace.
	found := false
	for _, r := range p.stdout.records(t) {
		if r["msg"] == "request" && r["trace_id"] == traceID {
			found = true
		}
	}
	if !found {
		t.Errorf("no access-log line with trace_id %s", traceID)
	}
}

// TestDebugAddress: pprof answers on its own listener and never on the API port.
func TestDebugAddress(t *testing.T) {
	dbg := strconv.Itoa(testkit.FreePort(t))
	p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-debug-address", dbg)
	c := newClient(1)
	status, _, body, err := do(c, http.MethodGet, "http://127.0.0.1:"+dbg+"/debug/pprof/", nil, nil)
	if err != nil || status != 200 || !strings.Contains(string(body), "goroutine") {
		t.Errorf("pprof index on the debug port: %d %v", status, err)
	}
	if status, _, _, err := do(c, http.MethodGet, p.url+"/debug/pprof/", nil, nil); err != nil || status != 404 {
		t.Errorf("pprof on the API port: %d %v, want 404", status, err)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
