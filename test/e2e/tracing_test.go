package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// Traffic of the tracing test: loadgen samples half of its requests, so the test sees both kinds.
const (
	traceRate     = 40
	traceDuration = 8 * time.Second
	traceRatio    = 0.5
)

// TestTracesEndToEnd is the path docs/tracing.md describes, with the real parts: loadgen and
// storage-api export spans to a real Jaeger (the pinned v2 all-in-one from tools/install.sh, run with
// deploy/jaeger/config.yaml), a real Prometheus scrapes both with exemplar storage on. Each exemplar of
// the latency histogram that Prometheus returns names a trace that Jaeger has, holding loadgen's client
// span, the API's server span and its store span, and the API's access log names it too. Requests that
// loadgen did not sample leave no trace anywhere.
func TestTracesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the tracing end-to-end test (builds binaries, runs Jaeger and Prometheus)")
	}
	prometheusBin, jaegerBin := testkit.Tool(t, "prometheus"), testkit.Tool(t, "jaeger")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildBinaries(ctx, t, dir)

	// Jaeger with the stack's configuration, every listener moved to a free 127.0.0.1 port.
	queryAddr, otlpGRPC, otlpHTTP, healthAddr := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	raw, err := os.ReadFile(absPath(t, "deploy/jaeger/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	jcfg := string(raw)
	for _, r := range []struct{ old, new string }{
		{"0.0.0.0:16686", queryAddr}, {"0.0.0.0:16685", testkit.FreeAddr(t)}, {"0.0.0.0:13133", healthAddr},
		{"0.0.0.0:4317", otlpGRPC}, {"0.0.0.0:4318", otlpHTTP},
	} {
		if !strings.Contains(jcfg, r.old) {
			t.Fatalf("deploy/jaeger/config.yaml no longer listens on %s; update this test", r.old)
		}
		jcfg = strings.ReplaceAll(jcfg, r.old, r.new)
	}
	if regexp.MustCompile(`0\.0\.0\.0:[0-9]`).MatchString(jcfg) {
		t.Fatalf("deploy/jaeger/config.yaml has a listener this test does not move to 127.0.0.1:\n%s", jcfg)
	}
	jcfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(jcfgPath, []byte(jcfg), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(ctx, t, "http://"+healthAddr+"/status", nil, jaegerBin, "--config", jcfgPath)

	otel := func(service string, extra ...string) []string {
		return append([]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + otlpHTTP,
			"OTEL_SERVICE_NAME=" + service,
			"OTEL_BSP_SCHEDULE_DELAY=200",
		}, extra...)
	}
	// The API exports over OTLP/gRPC, loadgen over OTLP/HTTP: both protocols reach the real receiver.
	apiOtel := append(otel("storage-api"), "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+otlpGRPC)
	apiAddr, loadgenAddr, promAddr := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	// The API keeps its default sampler: parent-based, so it follows loadgen's decision.
	api := serve(ctx, t, "http://"+apiAddr+"/readyz", apiOtel, filepath.Join(bin, "storage-api"),
		"-listen-address", apiAddr, "-storage", "bolt", "-data-dir", filepath.Join(dir, "data"), "-access-log=true")

	p := startPrometheus(ctx, t, prometheusBin, dir, promAddr, testConfig(t, apiAddr, loadgenAddr, testkit.FreeAddr(t)),
		"--enable-feature=exemplar-storage")

	loadStart := time.Now()
	out := runLoadgen(ctx, t, filepath.Join(bin, "loadgen"), otel("loadgen", "OTEL_TRACES_SAMPLER=traceidratio",
		"OTEL_TRACES_SAMPLER_ARG="+strconv.FormatFloat(traceRatio, 'f', -1, 64)),
		"-target", "http://"+apiAddr, "-mode", "rate", "-rate", strconv.Itoa(traceRate), "-duration", traceDuration.String(),
		"-metrics-address", loadgenAddr, "-mix", "put=1,get=2,delete=1", "-ids", "20")
	var sum struct{ Requests int64 }
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("loadgen summary %q: %v", out, err)
	}

	// The API's access log names the trace of every sampled request, and only those.
	logged := map[string]bool{} // trace ids in access-log lines of /api requests
	var apiRequests int64
	waitFor(ctx, t, "every API request in the access log", func() (bool, error) {
		clear(logged)
		apiRequests = 0
		sc := bufio.NewScanner(bytes.NewReader(api.Out.Bytes()))
		for sc.Scan() {
			var l struct {
				Msg, Path string
				TraceID   string `json:"trace_id"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "request" || l.Path != "/api/buckets/{id}" {
				continue
			}
			apiRequests++
			if l.TraceID != "" {
				logged[l.TraceID] = true
			}
		}
		return apiRequests == sum.Requests, sc.Err()
	})
	unsampled := apiRequests - int64(len(logged))
	t.Logf("%d API requests, %d traced, %d not sampled", apiRequests, len(logged), unsampled)
	if len(logged) == 0 || unsampled == 0 {
		t.Fatalf("at ratio %g, want both sampled and unsampled requests: %d traced of %d", traceRatio, len(logged), apiRequests)
	}

	// Jaeger has a trace for exactly those requests, for both services: sampled-out requests left none.
	j := jaegerAPI{base: "http://" + queryAddr}
	for _, service := range []string{"storage-api", "loadgen"} {
		var got map[string]bool
		waitFor(ctx, t, "Jaeger to hold every "+service+" trace", func() (bool, error) {
			var err error
			got, err = j.traceIDs(ctx, service, loadStart.Add(-time.Minute), time.Now().Add(time.Minute))
			return len(got) >= len(logged), err
		})
		for id := range got {
			if !logged[id] {
				t.Errorf("%s trace %s in Jaeger: no access-log line names it (an unsampled request was recorded?)", service, id)
			}
		}
		for id := range logged {
			if !got[id] {
				t.Errorf("access log names trace %s, which Jaeger has no %s spans of", id, service)
			}
		}
	}

	// Exemplars of the latency histograms, as Grafana's exemplar query asks for them.
	waitFor(ctx, t, "a scrape after the last request", func() (bool, error) {
		r, err := p.instant(ctx, `sum(http_request_duration_seconds_count{job="storage_api", path="/api/buckets/{id}"})`, time.Now())
		if err != nil || len(r) == 0 {
			return false, err
		}
		v, err := r[0].float()
		return int64(v) >= sum.Requests, err
	})
	end := time.Now()
	checked := 0
	for _, query := range []string{
		`http_request_duration_seconds_bucket{job="storage_api", path="/api/buckets/{id}"}`,
		// The native histogram's own exemplars: the dashboard's quantile panels query it by this name.
		`http_request_duration_seconds{job="storage_api", path="/api/buckets/{id}"}`,
		`storage_operation_duration_seconds_bucket{job="storage_api"}`,
		`loadgen_request_duration_seconds_bucket{job="loadgen"}`,
	} {
		ids, err := p.exemplarTraceIDs(ctx, query, loadStart.Add(-time.Minute), end)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			t.Errorf("%s: Prometheus stored no exemplars", query)
			continue
		}
		for _, id := range ids {
			if !logged[id] {
				t.Errorf("%s: exemplar trace_id %s names no traced request of the access log", query, id)
			}
		}
		if query[:5] != "http_" {
			continue
		}
		// Every exemplar of the API's latency leads to a whole trace: client, server, store.
		for _, id := range ids {
			tr, err := j.trace(ctx, id)
			if err != nil {
				t.Errorf("exemplar trace %s: %v", id, err)
				continue
			}
			checkTrace(t, id, tr)
			checked++
		}
	}
	t.Logf("checked %d exemplar traces", checked)
}

// checkTrace asserts that a trace holds loadgen's client span, the API's server span as its child, and a
// store span as the server span's child.
func checkTrace(t *testing.T, id string, tr jaegerTrace) {
	t.Helper()
	service := func(s jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }
	find := func(pred func(jaegerSpan) bool) *jaegerSpan {
		for i := range tr.Spans {
			if pred(tr.Spans[i]) {
				return &tr.Spans[i]
			}
		}
		return nil
	}
	client := find(func(s jaegerSpan) bool {
		return service(s) == "loadgen" && s.tag("span.kind") == "client" && strings.HasSuffix(s.OperationName, " /api/buckets/{id}")
	})
	if client == nil {
		t.Errorf("trace %s: no loadgen client span: %+v", id, tr.Spans)
		return
	}
	server := find(func(s jaegerSpan) bool {
		return service(s) == "storage-api" && s.tag("span.kind") == "server" && s.parent() == client.SpanID
	})
	if server == nil {
		t.Errorf("trace %s: no storage-api server span under the client span %s", id, client.OperationName)
		return
	}
	if server.OperationName != client.OperationName || server.tag("http.route") != "/api/buckets/{id}" {
		t.Errorf("trace %s: server span %q (route %q) for client span %q", id, server.OperationName, server.tag("http.route"), client.OperationName)
	}
	method, _, _ := strings.Cut(server.OperationName, " ")
	op := map[string]string{"GET": "get", "HEAD": "stat", "PUT": "put", "DELETE": "delete"}[method]
	store := find(func(s jaegerSpan) bool {
		return service(s) == "storage-api" && s.OperationName == "storage "+op && s.parent() == server.SpanID
	})
	if store == nil {
		t.Errorf("trace %s: no %q span under the server span", id, "storage "+op)
		return
	}
	if store.tag("storage.backend") != "bolt" {
		t.Errorf("trace %s: store span backend %q", id, store.tag("storage.backend"))
	}
	if op == "put" || op == "delete" {
		if find(func(s jaegerSpan) bool { return s.OperationName == "bolt commit wait" && s.parent() == store.SpanID }) == nil {
			t.Errorf("trace %s: no bolt commit wait span under %q", id, store.OperationName)
		}
	}
}

// exemplarTraceIDs returns the distinct trace_id labels of the exemplars of query's series.
func (p promAPI) exemplarTraceIDs(ctx context.Context, query string, start, end time.Time) ([]string, error) {
	var data []struct {
		Exemplars []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	err := p.get(ctx, "/api/v1/query_exemplars", url.Values{"query": {query}, "start": {unixTime(start)}, "end": {unixTime(end)}}, &data)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range data {
		for _, e := range s.Exemplars {
			if id := e.Labels["trace_id"]; id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// jaegerAPI is Jaeger's query HTTP API (the one its UI and Grafana's Jaeger datasource use).
type jaegerAPI struct{ base string }

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			if v, ok := t.Value.(string); ok {
				return v
			}
			b, _ := json.Marshal(t.Value)
			return string(b)
		}
	}
	return ""
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (j jaegerAPI) get(ctx context.Context, path string, params url.Values) ([]jaegerTrace, error) {
	var out struct {
		Data   []jaegerTrace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	u := j.base + path
	if params != nil {
		u += "?" + params.Encode()
	}
	if err := getJSON(ctx, u, &out); err != nil {
		return nil, err
	}
	if len(out.Errors) > 0 {
		return nil, errors.New(out.Errors[0].Msg)
	}
	return out.Data, nil
}

func (j jaegerAPI) trace(ctx context.Context, id string) (jaegerTrace, error) {
	ts, err := j.get(ctx, "/api/traces/"+id, nil)
	if err != nil {
		return jaegerTrace{}, err
	}
	if len(ts) != 1 {
		return jaegerTrace{}, errors.New("Jaeger returned " + strconv.Itoa(len(ts)) + " traces")
	}
	return ts[0], nil
}

// traceIDs returns the ids of the traces with spans of service in [start, end].
func (j jaegerAPI) traceIDs(ctx context.Context, service string, start, end time.Time) (map[string]bool, error) {
	ts, err := j.get(ctx, "/api/traces", url.Values{"service": {service}, "limit": {"100000"},
		"start": {strconv.FormatInt(start.UnixMicro(), 10)}, "end": {strconv.FormatInt(end.UnixMicro(), 10)}})
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, t := range ts {
		ids[t.TraceID] = true
	}
	return ids, nil
}
