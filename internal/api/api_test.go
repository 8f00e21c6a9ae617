package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
)

// testServer is the API over a memory store with metrics on their own registry.
type testServer struct {
	handler http.Handler
	reg     *prometheus.Registry
	store   storage.Store
}

func newTestServer(t testing.TB, maxSize int64) *testServer {
	t.Helper()
	a := apitest.New(apitest.Options{MaxObjectSize: maxSize})
	return &testServer{handler: a, reg: a.Registry, store: a.Store}
}

type request struct {
	method, target string
	body           string
	header         map[string]string
}

func (s *testServer) do(r request) *httptest.ResponseRecorder {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.target, body)
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

const etagOfX = `"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"` // sha256("x")

func TestHandlers(t *testing.T) {
	tests := []struct {
		name       string
		setup      []request
		req        request
		wantStatus int
		wantBody   string // exact body; "" means empty, unless wantError is set
		wantError  string // JSON {"error": ...} containing this
		wantHeader map[string]string
	}{
		{name: "put new", req: request{method: "PUT", target: "/api/buckets/a", body: "x"},
			wantStatus: 201, wantHeader: map[string]string{"ETag": etagOfX, "Location": "/api/buckets/a"}},
		{name: "put replace", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "old"}},
			req: request{method: "PUT", target: "/api/buckets/a", body: "x"}, wantStatus: 204,
			wantHeader: map[string]string{"ETag": etagOfX}},
		{name: "put empty body", req: request{method: "PUT", target: "/api/buckets/a", header: map[string]string{"Content-Length": "0"}},
			wantStatus: 201},
		{name: "put without framing", req: request{method: "PUT", target: "/api/buckets/a"}, wantStatus: 411, wantError: "Content-Length"},
		{name: "put if-none-match star on existing", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "PUT", target: "/api/buckets/a", body: "y", header: map[string]string{"If-None-Match": "*"}},
			wantStatus: 412, wantError: "precondition failed"},
		{name: "put if-match current", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "PUT", target: "/api/buckets/a", body: "y", header: map[string]string{"If-Match": etagOfX}},
			wantStatus: 204},
		{name: "put if-match weak never matches", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "PUT", target: "/api/buckets/a", body: "y", header: map[string]string{"If-Match": "W/" + etagOfX}},
			wantStatus: 412, wantError: "precondition failed"},
		{name: "put if-match unquoted", req: request{method: "PUT", target: "/api/buckets/a", body: "y", header: map[string]string{"If-Match": "abc"}},
			wantStatus: 400, wantError: "If-Match"},
		{name: "delete if-match stale", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "DELETE", target: "/api/buckets/a", header: map[string]string{"If-Match": `"stale"`}},
			wantStatus: 412, wantError: "precondition failed"},
		{name: "put too large", req: request{method: "PUT", target: "/api/buckets/a", body: strings.Repeat("y", 11)},
			wantStatus: 413, wantError: "object too large"},
		{name: "put at the limit", req: request{method: "PUT", target: "/api/buckets/a", body: strings.Repeat("y", 10)},
			wantStatus: 201},
		{name: "put content type too long", req: request{method: "PUT", target: "/api/buckets/a", body: "x",
			header: map[string]string{"Content-Type": strings.Repeat("t", 256)}}, wantStatus: 400, wantError: "Content-Type"},
		{name: "get", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x",
			header: map[string]string{"Content-Type": "text/plain"}}},
			req: request{method: "GET", target: "/api/buckets/a"}, wantStatus: 200, wantBody: "x",
			wantHeader: map[string]string{"Content-Type": "text/plain", "Content-Length": "1", "ETag": etagOfX,
				"X-Content-Type-Options": "nosniff"}},
		{name: "get default content type", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req: request{method: "GET", target: "/api/buckets/a"}, wantStatus: 200, wantBody: "x",
			wantHeader: map[string]string{"Content-Type": "application/octet-stream"}},
		{name: "head", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req: request{method: "HEAD", target: "/api/buckets/a"}, wantStatus: 200,
			wantHeader: map[string]string{"Content-Length": "1", "ETag": etagOfX}},
		{name: "get if-none-match", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "GET", target: "/api/buckets/a", header: map[string]string{"If-None-Match": etagOfX}},
			wantStatus: 304, wantHeader: map[string]string{"ETag": etagOfX}},
		{name: "get if-none-match weak in list", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "GET", target: "/api/buckets/a", header: map[string]string{"If-None-Match": `"zz", W/` + etagOfX}},
			wantStatus: 304},
		{name: "get if-none-match star", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "GET", target: "/api/buckets/a", header: map[string]string{"If-None-Match": "*"}},
			wantStatus: 304},
		{name: "get if-none-match other", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req:        request{method: "GET", target: "/api/buckets/a", header: map[string]string{"If-None-Match": `"other"`}},
			wantStatus: 200, wantBody: "x"},
		{name: "get missing", req: request{method: "GET", target: "/api/buckets/missing"}, wantStatus: 404, wantError: "not found"},
		{name: "head missing", req: request{method: "HEAD", target: "/api/buckets/missing"}, wantStatus: 404, wantError: "not found"},
		{name: "delete", setup: []request{{method: "PUT", target: "/api/buckets/a", body: "x"}},
			req: request{method: "DELETE", target: "/api/buckets/a"}, wantStatus: 204},
		{name: "delete missing", req: request{method: "DELETE", target: "/api/buckets/a"}, wantStatus: 404, wantError: "not found"},
		{name: "escaped slash in id", setup: []request{{method: "PUT", target: "/api/buckets/a%2Fb", body: "x"}},
			req: request{method: "GET", target: "/api/buckets/a%2Fb"}, wantStatus: 200, wantBody: "x"},
		{name: "empty id", req: request{method: "PUT", target: "/api/buckets/", body: "x"}, wantStatus: 400, wantError: "invalid id: empty"},
		{name: "id too long", req: request{method: "PUT", target: "/api/buckets/" + strings.Repeat("i", 1025), body: "x"},
			wantStatus: 400, wantError: "invalid id"},
		{name: "id at the limit", req: request{method: "PUT", target: "/api/buckets/" + strings.Repeat("i", 1024), body: "x"},
			wantStatus: 201},
		{name: "dot id", req: request{method: "PUT", target: "/api/buckets/%2e", body: "x"}, wantStatus: 400, wantError: "segments"},
		{name: "dot-dot id", req: request{method: "GET", target: "/api/buckets/.."}, wantStatus: 400, wantError: "segments"},
		{name: "dot segment inside id", req: request{method: "GET", target: "/api/buckets/a%2F.%2Fb"}, wantStatus: 400, wantError: "segments"},
		{name: "dot segments in path", req: request{method: "GET", target: "/api/buckets/a/../b"}, wantStatus: 400, wantError: "segments"},
		{name: "double slash", req: request{method: "GET", target: "//healthz"}, wantStatus: 404, wantError: "not found"},
		{name: "dots inside a segment are fine", req: request{method: "PUT", target: "/api/buckets/a..b", body: "x"}, wantStatus: 201},
		{name: "id not utf-8", req: request{method: "GET", target: "/api/buckets/%ff%fe"}, wantStatus: 400, wantError: "UTF-8"},
		{name: "wrong method", req: request{method: "POST", target: "/api/buckets/a"}, wantStatus: 405,
			wantError: "not allowed", wantHeader: map[string]string{"Allow": "PUT, GET, HEAD, DELETE"}},
		{name: "invented method", req: request{method: "BREW", target: "/api/buckets/a"}, wantStatus: 405, wantError: "not allowed"},
		{name: "unknown route", req: request{method: "GET", target: "/nope"}, wantStatus: 404, wantError: "not found"},
		{name: "bucket list is not a route", req: request{method: "GET", target: "/api/buckets"}, wantStatus: 404, wantError: "not found"},
		{name: "healthz", req: request{method: "GET", target: "/healthz"}, wantStatus: 200, wantBody: `{"status":"ok"}` + "\n"},
		{name: "healthz wrong method", req: request{method: "POST", target: "/healthz"}, wantStatus: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD"}, wantError: "not allowed"},
		{name: "readyz", req: request{method: "GET", target: "/readyz"}, wantStatus: 200, wantBody: `{"status":"ready"}` + "\n"},
		{name: "request id echoed", req: request{method: "GET", target: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}},
			wantStatus: 200, wantBody: `{"status":"ok"}` + "\n", wantHeader: map[string]string{"X-Request-Id": "abc-123"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, 10)
			for _, r := range tc.setup {
				if rec := s.do(r); rec.Code >= 300 {
					t.Fatalf("setup %s %s: %d %s", r.method, r.target, rec.Code, rec.Body)
				}
			}
			rec := s.do(tc.req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			for k, v := range tc.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id in the response")
			}
			if tc.wantError != "" {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type = %q, want application/json", ct)
				}
				var e struct{ Error string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
				}
				if !strings.Contains(e.Error, tc.wantError) {
					t.Errorf("error = %q, want it to contain %q", e.Error, tc.wantError)
				}
				return
			}
			if got := rec.Body.String(); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
		})
	}
}

func TestReadyzFailsDuringShutdown(t *testing.T) {
	shutting := false
	h := api.New(api.Options{Store: memory.New(), MaxObjectSize: 10, ShuttingDown: func() bool { return shutting }})
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	if c := get(); c != 200 {
		t.Fatalf("readyz = %d before shutdown", c)
	}
	shutting = true
	if c := get(); c != 503 {
		t.Fatalf("readyz = %d during shutdown, want 503", c)
	}
}

func TestReadyzFailsWhenStoreClosed(t *testing.T) {
	s := newTestServer(t, 10)
	s.store.Close()
	if rec := s.do(request{method: "GET", target: "/readyz"}); rec.Code != 503 {
		t.Fatalf("readyz = %d with a closed store, want 503", rec.Code)
	}
	// The API answers 503 (retry later), not 500, when the store is unavailable.
	if rec := s.do(request{method: "GET", target: "/api/buckets/a"}); rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("GET with a closed store = %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestMetricsRecorded checks the labels of http_request_duration_seconds for each kind
// of request, including requests that match no route and invented methods.
func TestMetricsRecorded(t *testing.T) {
	s := newTestServer(t, 10)
	s.do(request{method: "PUT", target: "/api/buckets/a", body: "x"})
	s.do(request{method: "GET", target: "/api/buckets/a"})
	s.do(request{method: "GET", target: "/api/buckets/zzz"})
	s.do(request{method: "GET", target: "/random/path"})
	s.do(request{method: "BREW", target: "/api/buckets/a"})
	text := api.RequireSamples(t, s.reg,
		`http_request_duration_seconds_count{method="PUT",path="/api/buckets/{id}",status="201"} 1`,
		`http_request_duration_seconds_count{method="GET",path="/api/buckets/{id}",status="200"} 1`,
		`http_request_duration_seconds_count{method="GET",path="/api/buckets/{id}",status="404"} 1`,
		`http_request_duration_seconds_count{method="GET",path="unmatched",status="404"} 1`,
		`http_request_duration_seconds_count{method="OTHER",path="/api/buckets/{id}",status="405"} 1`,
		// Created at zero up front, for the alert rules' ratios.
		`http_request_duration_seconds_count{method="PUT",path="/api/buckets/{id}",status="500"} 0`,
		`http_request_duration_seconds_count{method="GET",path="/api/buckets/{id}",status="503"} 0`,
		`storage_operation_duration_seconds_count{backend="memory",operation="get",result="not_found"} 1`,
		`storage_operation_duration_seconds_count{backend="memory",operation="put",result="ok"} 1`,
	)
	for _, raw := range []string{"zzz", "random", "BREW"} {
		if strings.Contains(text, raw) {
			t.Errorf("raw request data %q leaked into labels:\n%s", raw, text)
		}
	}
}

// seriesCount counts the series in the registry (a histogram counts once).
func seriesCount(t testing.TB, reg *prometheus.Registry) int {
	t.Helper()
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCardinalityBounded: 10,000 distinct ids, 1,000 unknown paths and 100 invented
// methods add no series beyond those one request of each kind created.
func TestCardinalityBounded(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, 1024)
	kinds := func(i int) []request {
		id := fmt.Sprintf("id-%d", i)
		return []request{
			{method: "PUT", target: "/api/buckets/" + id, body: "x"},
			{method: "PUT", target: "/api/buckets/" + id, body: "y"},
			{method: "GET", target: "/api/buckets/" + id},
			{method: "HEAD", target: "/api/buckets/" + id},
			{method: "DELETE", target: "/api/buckets/" + id},
			{method: "GET", target: "/api/buckets/" + id},
			{method: "DELETE", target: "/api/buckets/" + id},
		}
	}
	for _, r := range kinds(0) {
		s.do(r)
	}
	s.do(request{method: "GET", target: "/unknown/0"})
	s.do(request{method: "METHOD0", target: "/api/buckets/x"})
	s.do(request{method: "METHOD0", target: "/unknown/0"})
	before := seriesCount(t, s.reg)

	// Every kind of request ran above; here each new id gets a PUT, a GET and a DELETE.
	for i := 1; i <= 10_000; i++ {
		id := fmt.Sprintf("/api/buckets/id-%d", i)
		s.do(request{method: "PUT", target: id, body: "x"})
		s.do(request{method: "GET", target: id})
		s.do(request{method: "DELETE", target: id})
	}
	for i := 1; i <= 1_000; i++ {
		s.do(request{method: "GET", target: fmt.Sprintf("/unknown/%d/%x", i, i*7919)})
	}
	for i := 1; i <= 100; i++ {
		s.do(request{method: fmt.Sprintf("METHOD%d", i), target: "/api/buckets/x"})
		s.do(request{method: fmt.Sprintf("METHOD%d", i), target: fmt.Sprintf("/unknown/%d", i)})
	}
	if after := seriesCount(t, s.reg); after != before {
		t.Fatalf("series: %d after one request of each kind, %d after 10,000 ids, 1,000 paths and 100 methods", before, after)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	s := newTestServer(t, 10)
	s.do(request{method: "GET", target: "/healthz"})
	rec := s.do(request{method: "GET", target: "/metrics"})
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`http_request_duration_seconds_bucket{method="GET",path="/healthz",status="200",le="0.005"} 1`,
		"http_requests_in_flight 1", // the scrape itself
		"storage_api_build_info{",
		`storage_objects{backend="memory"} 0`,
		"go_goroutines",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestLargeObjectRoundTrip(t *testing.T) {
	const size = 10 << 20
	s := newTestServer(t, size)
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	req := httptest.NewRequest("PUT", "/api/buckets/big", bytes.NewReader(data))
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	if rec.Code != 201 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	rec = s.do(request{method: "GET", target: "/api/buckets/big"})
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), data) {
		t.Fatalf("GET = %d, %d bytes", rec.Code, rec.Body.Len())
	}
	// Chunked upload (no Content-Length) over the limit is cut at the limit.
	req = httptest.NewRequest("PUT", "/api/buckets/big2", io.MultiReader(bytes.NewReader(data), strings.NewReader("!")))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	if rec.Code != 413 {
		t.Fatalf("chunked PUT over the limit = %d, want 413", rec.Code)
	}
	if rec := s.do(request{method: "GET", target: "/api/buckets/big2"}); rec.Code != 404 {
		t.Fatalf("a rejected PUT stored something: GET = %d", rec.Code)
	}
}
