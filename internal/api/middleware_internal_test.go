package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
)

func TestPanicRecovered(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	h := observe(m.Route("/boom", []string{"GET"}, nil), slog.New(slog.DiscardHandler), newAccessLog(io.Discard), nil, "/boom")(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != 500 {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error (%v)", rec.Body, err)
	}
	requireSamples(t, reg,
		`http_request_panics_total{path="/boom"} 1`,
		`http_request_duration_seconds_count{method="GET",path="/boom",status="500"} 1`,
	)
}

func TestClientGoneRecordedAs499(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	ctx, cancel := context.WithCancel(context.Background())
	h := observe(m.Route("/slow", []string{"GET"}, nil), slog.New(slog.DiscardHandler), nil, nil, "/slow")(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel() // the client goes away before the handler answers
			<-r.Context().Done()
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/slow", nil).WithContext(ctx))
	requireSamples(t, reg, `http_request_duration_seconds_count{method="GET",path="/slow",status="499"} 1`)
}

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	rec := httptest.NewRecorder()
	var w http.ResponseWriter = &responseWriter{ResponseWriter: rec}
	if _, ok := w.(http.Flusher); !ok {
		t.Error("wrapper hides http.Flusher")
	}
	if _, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok {
		t.Error("wrapper has no Unwrap")
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Errorf("ResponseController.Flush through the wrapper: %v", err)
	}
	if !rec.Flushed {
		t.Error("Flush did not reach the underlying writer")
	}
}

// requireSamples fails the test for each sample line ("name{labels} value", as /metrics
// writes it) that g does not expose, and returns the text exposition of the families it
// looked in.
func requireSamples(t *testing.T, g prometheus.Gatherer, samples ...string) string {
	t.Helper()
	var families []string
	for _, s := range samples {
		name, _, _ := strings.Cut(strings.Fields(s)[0], "{")
		families = append(families, name) // a counter, a gauge
		for _, suffix := range []string{"_count", "_sum", "_bucket"} {
			families = append(families, strings.TrimSuffix(name, suffix)) // a histogram
		}
	}
	b, err := testutil.GatherAndFormat(g, expfmt.TypeTextPlain, families...)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, s := range samples {
		if !strings.Contains("\n"+text, "\n"+s+"\n") {
			t.Errorf("no sample %s in:\n%s", s, text)
		}
	}
	return text
}

// RequireSamples is requireSamples for the tests of package api_test.
var RequireSamples = requireSamples
