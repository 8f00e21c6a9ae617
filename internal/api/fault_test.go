package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
	"github.com/sre-instrumentation/storage-api/internal/fault"
)

// TestInjectedFaults: the HTTP layer answers an injected error with its own JSON 503 on the
// /api routes only, counts it, and a client leaving during an injected delay gets nothing.
func TestInjectedFaults(t *testing.T) {
	newHandler := func(cfg fault.Config) (http.Handler, *prometheus.Registry) {
		a := apitest.New(apitest.Options{MaxObjectSize: 1 << 10, Fault: cfg})
		return a, a.Registry
	}
	h, reg := newHandler(fault.Config{ErrorRatio: 1})
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/buckets/a", nil))
		var e struct{ Error string }
		if rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error != "injected fault" {
			t.Fatalf("GET with error ratio 1 = %d %s, want 503 {\"error\":\"injected fault\"}", rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/healthz with error ratio 1 = %d, want 200: faults apply to /api only", rec.Code)
	}
	want := `# HELP storage_api_faults_injected_total Faults injected into API requests on purpose (-fault-* flags), by kind (error, latency).
# TYPE storage_api_faults_injected_total counter
storage_api_faults_injected_total{kind="error"} 3
storage_api_faults_injected_total{kind="latency"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "storage_api_faults_injected_total"); err != nil {
		t.Error(err)
	}

	// A delay longer than the client waits: the request ends, nothing is written.
	h, _ = newHandler(fault.Config{Latency: time.Hour, LatencyRatio: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/buckets/a", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Errorf("a client gone during the injected delay got %d %s", rec.Code, rec.Body)
	}
}
