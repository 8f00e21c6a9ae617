package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
	if got := counterValue(t, reg, "http_request_panics_total"); got != 1 {
		t.Errorf("http_request_panics_total = %v, want 1", got)
	}
	if n := sampleCount(t, reg, `GET`, "/boom", "500"); n != 1 {
		t.Errorf("requests recorded with status 500 = %d, want 1", n)
	}
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
	if n := sampleCount(t, reg, "GET", "/slow", "499"); n != 1 {
		t.Fatalf("requests recorded with status 499 = %d, want 1", n)
	}
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

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func sampleCount(t *testing.T, reg *prometheus.Registry, method, path, status string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["method"] == method && l["path"] == path && l["status"] == status {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
