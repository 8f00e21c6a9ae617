package tracing_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestOff(t *testing.T) {
	for name, e := range map[string]map[string]string{
		"no endpoint":   {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
		"sdk disabled":  {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
		"exporter none": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
	} {
		tp, _, err := tracing.New(context.Background(), "svc", "v1", env(e))
		if err != nil || tp != nil {
			t.Errorf("%s: provider %v, error %v; want tracing off", name, tp, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
	for _, tc := range []struct{ key, value, want string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318", "http(s) URL"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf or grpc"},
		{"OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"},
		{"OTEL_TRACES_SAMPLER_ARG", "1.5", "0..1"},
		{"OTEL_TRACES_EXPORTER", "zipkin", "only otlp"},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "-1", "positive integer"},
		{"OTEL_RESOURCE_ATTRIBUTES", "novalue", "key=value"},
	} {
		e := map[string]string{}
		for k, v := range base {
			e[k] = v
		}
		e[tc.key] = tc.value
		tp, _, err := tracing.New(context.Background(), "svc", "v1", env(e))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: error %v, want one mentioning %q", tc.key, tc.value, err, tc.want)
		}
		if tp != nil {
			_ = tp.Shutdown(context.Background())
		}
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		wantName     string
		wantRatio    float64
	}{
		{"", "", "parentbased_traceidratio", tracing.DefaultSampleRatio},
		{"", "0.25", "parentbased_traceidratio", 0.25},
		{"traceidratio", "", "traceidratio", tracing.DefaultSampleRatio},
		{"always_on", "0.5", "always_on", 0},
		{"parentbased_always_off", "", "parentbased_always_off", 0},
	} {
		tp, cfg, err := tracing.New(context.Background(), "svc", "v1", env(map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces",
			"OTEL_TRACES_SAMPLER":                tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg,
		}))
		if err != nil {
			t.Fatal(err)
		}
		_ = tp.Shutdown(context.Background())
		if cfg.Sampler != tc.wantName || cfg.SamplerArg != tc.wantRatio {
			t.Errorf("sampler %q arg %q: got %s %g, want %s %g", tc.sampler, tc.arg, cfg.Sampler, cfg.SamplerArg, tc.wantName, tc.wantRatio)
		}
	}
}

// collector is an OTLP/HTTP receiver that keeps what it was sent.
type collector struct {
	mu    sync.Mutex
	paths []string
	reqs  []*coltracepb.ExportTraceServiceRequest
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// TestShutdownFlushes: with a batch delay far longer than the test, only Shutdown can
// have exported the span; it goes to <endpoint>/v1/traces with the resource from the
// environment.
func TestShutdownFlushes(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	tp, cfg, err := tracing.New(context.Background(), "default-name", "v9", env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL + "/",
		"OTEL_BSP_SCHEDULE_DELAY":     "600000",
		"OTEL_TRACES_SAMPLER":         "always_on",
		"OTEL_SERVICE_NAME":           "from-env",
		"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment.name=test,team=sre%20team",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != srv.URL+"/v1/traces" {
		t.Errorf("endpoint %s", cfg.Endpoint)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "work")
	span.End()
	c.mu.Lock()
	if len(c.reqs) != 0 {
		t.Fatal("exported before Shutdown: the batch delay was not applied")
	}
	c.mu.Unlock()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) != 1 || c.paths[0] != "/v1/traces" {
		t.Fatalf("got %d exports to %q, want 1 to /v1/traces", len(c.reqs), c.paths)
	}
	rs := c.reqs[0].GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || rs[0].GetScopeSpans()[0].GetSpans()[0].GetName() != "work" {
		t.Fatalf("export %v", c.reqs[0])
	}
	res := map[string]string{}
	for _, kv := range rs[0].GetResource().GetAttributes() {
		res[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	for k, v := range map[string]string{"service.name": "from-env", "service.version": "v9",
		"deployment.environment.name": "test", "team": "sre team", "telemetry.sdk.language": "go"} {
		if res[k] != v {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, res[k], v, res)
		}
	}
}

// traceServer is an OTLP/gRPC receiver that counts the spans it was sent.
type traceServer struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (s *traceServer) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.names = append(s.names, sp.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports to the endpoint as it is (no path), in
// plaintext for an http:// URL.
func TestGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &traceServer{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	tp, cfg, err := tracing.New(context.Background(), "svc", "v1", env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + ln.Addr().String(),
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER":         "always_on",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "http://"+ln.Addr().String() || cfg.Protocol != "grpc" {
		t.Errorf("config %+v", cfg)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "over-grpc")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.names) != 1 || recv.names[0] != "over-grpc" {
		t.Errorf("received %q", recv.names)
	}
}

func TestHeadSamplingOption(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want float64
	}{
		{map[string]string{}, tracing.DefaultSampleRatio},
		{map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0.2"}, 0.2},
		{map[string]string{"OTEL_TRACES_SAMPLER_ARG": "1"}, 1},
		{map[string]string{"OTEL_TRACES_SAMPLER_ARG": "0"}, 1}, // the SDK's ratio 0 drops every root itself
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio"}, 1},
	} {
		tc.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:1"
		tp, cfg, err := tracing.New(context.Background(), "svc", "", env(tc.env), tracing.WithHeadSampling())
		if err != nil {
			t.Fatal(err)
		}
		// With a head ratio the provider must sample the roots it is asked for, else the
		// effective ratio would be its square.
		_, span := tp.Tracer("t").Start(context.Background(), "root")
		sampled := span.SpanContext().IsSampled()
		span.End()
		_ = tp.Shutdown(context.Background())
		if cfg.HeadRatio != tc.want {
			t.Errorf("%v: HeadRatio %v, want %v", tc.env, cfg.HeadRatio, tc.want)
		}
		if cfg.HeadRatio < 1 && !sampled {
			t.Errorf("%v: head ratio %v but the provider dropped a root", tc.env, cfg.HeadRatio)
		}
	}
	_, cfg, err := tracing.New(context.Background(), "svc", "", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}))
	if err != nil || cfg.HeadRatio != 1 {
		t.Errorf("without the option: HeadRatio %v (%v), want 1", cfg.HeadRatio, err)
	}
}
