package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sre-instrumentation/storage-api/internal/admission"
	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
)

// budgetServer is the API over a memory store with a body budget of limit bytes.
func budgetServer(t *testing.T, limit int64) (http.Handler, *admission.Budget, *metrics.Admission) {
	t.Helper()
	reg := metrics.NewRegistry("test", "test")
	budget := admission.NewBudget(limit)
	adm := metrics.NewAdmission(reg, budget, nil)
	h := api.New(api.Options{
		Store: memory.New(), MaxObjectSize: 1 << 20, Log: slog.New(slog.DiscardHandler),
		Budget: budget, Admission: adm,
	})
	return h, budget, adm
}

func serve(h http.Handler, method, target string, body io.Reader, contentLength int64) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	req.ContentLength = contentLength
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestBudgetRefusals: a body that does not fit in what is left of the budget is refused
// with 503, Retry-After and a JSON error, before it is read; GETs too; and every
// reservation is returned afterwards.
func TestBudgetRefusals(t *testing.T) {
	h, budget, adm := budgetServer(t, 1<<20)
	if rec := serve(h, "PUT", "/api/buckets/a", strings.NewReader(strings.Repeat("a", 300<<10)), 300<<10); rec.Code != http.StatusCreated {
		t.Fatalf("PUT within the budget: %d %s", rec.Code, rec.Body)
	}
	if budget.InUse() != 0 {
		t.Fatalf("budget in use %d after the PUT, want 0", budget.InUse())
	}

	// Someone else holds most of the budget.
	if !budget.TryAcquire(900 << 10) {
		t.Fatal("acquire")
	}
	body := &countingReader{r: strings.NewReader(strings.Repeat("b", 200<<10))}
	rec := serve(h, "PUT", "/api/buckets/b", body, 200<<10)
	checkRefused(t, rec)
	if body.n != 0 {
		t.Errorf("the refused PUT's body was read (%d bytes): refusal must come before the body", body.n)
	}
	if rec.Header().Get("Connection") != "close" {
		t.Errorf("a refused PUT must close its connection (its body is still on the wire)")
	}
	checkRefused(t, serve(h, "GET", "/api/buckets/a", nil, 0))
	// HEAD has no body to hold.
	if rec := serve(h, "HEAD", "/api/buckets/a", nil, 0); rec.Code != http.StatusOK {
		t.Errorf("HEAD with the budget full: %d", rec.Code)
	}
	budget.Release(900 << 10)
	if rec := serve(h, "GET", "/api/buckets/a", nil, 0); rec.Code != http.StatusOK || rec.Body.Len() != 300<<10 {
		t.Errorf("GET once the budget is free: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if budget.InUse() != 0 {
		t.Errorf("budget in use %d at the end, want 0", budget.InUse())
	}
	_ = adm
}

// TestBudgetChunkedBody: a body of unknown length is charged as it grows, and refused
// when it outgrows the budget.
func TestBudgetChunkedBody(t *testing.T) {
	h, budget, _ := budgetServer(t, 1<<20)
	if rec := serve(h, "PUT", "/api/buckets/small", strings.NewReader("hello"), -1); rec.Code != http.StatusCreated {
		t.Fatalf("chunked PUT: %d %s", rec.Code, rec.Body)
	}
	budget.TryAcquire(800 << 10)
	rec := serve(h, "PUT", "/api/buckets/big", strings.NewReader(strings.Repeat("c", 600<<10)), -1)
	checkRefused(t, rec)
	budget.Release(800 << 10)
	if budget.InUse() != 0 {
		t.Errorf("budget in use %d at the end, want 0", budget.InUse())
	}
}

func checkRefused(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("got %d Retry-After=%q %.200s; want 503 with Retry-After and a JSON error", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestRefusedCounted: the refusal counter has every reason from the start, and counts.
func TestRefusedCounted(t *testing.T) {
	h, budget, adm := budgetServer(t, 1<<20)
	budget.TryAcquire(1 << 20)
	serve(h, "PUT", "/api/buckets/a", strings.NewReader("abc"), 3)
	_ = adm
	reg := metrics.NewRegistry("t", "t")
	a := metrics.NewAdmission(reg, admission.NewBudget(10), nil)
	if n := testutil.CollectAndCount(reg, "storage_api_requests_refused_total"); n != 3 {
		t.Errorf("storage_api_requests_refused_total has %d series at start, want 3 (one per reason)", n)
	}
	a.Refused(metrics.RefusedTooSlow)
	want := `
# HELP storage_api_inflight_body_bytes Bytes of request and response bodies held in memory now, as charged against -max-inflight-bytes.
# TYPE storage_api_inflight_body_bytes gauge
storage_api_inflight_body_bytes 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "storage_api_inflight_body_bytes"); err != nil {
		t.Error(err)
	}
}

// TestPutAllocatesBodyOnce: a PUT of N bytes allocates about N bytes in all, not the
// 2-3 N of a growing buffer (a 10 MiB PUT used to allocate 40.8 MiB with bolt).
func TestPutAllocatesBodyOnce(t *testing.T) {
	const n = 8 << 20
	h := api.New(api.Options{Store: memory.New(), MaxObjectSize: n, Log: slog.New(slog.DiscardHandler)})
	data := bytes.Repeat([]byte("d"), n)
	put := func() {
		rec := serve(h, "PUT", "/api/buckets/x", bytes.NewReader(data), n)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
		}
	}
	put()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	put()
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d-byte PUT allocated %d bytes (%.2f N)", n, allocated, float64(allocated)/n)
	// N for the body, the 256 KiB probe, and a few KiB of request handling.
	if limit := uint64(n + 512<<10); allocated > limit {
		t.Errorf("a %d-byte PUT allocated %d bytes, want at most %d", n, allocated, limit)
	}
}
