package loadgen

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.Observe("GET", 200, nil, 3*time.Millisecond, "")
	m.Observe("GET", 200, nil, 30*time.Millisecond, "")
	m.Observe("PUT", 0, errors.New("connection refused"), time.Millisecond, "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`loadgen_requests_total{method="GET",status="200"} 2`,
		`loadgen_requests_total{method="PUT",status="error"} 1`,
		`loadgen_request_duration_seconds_bucket{method="GET",le="0.005"} 1`,
		`loadgen_request_duration_seconds_bucket{method="GET",le="0.05"} 2`,
		`loadgen_request_duration_seconds_bucket{method="GET",le="10"} 2`,
		`loadgen_request_duration_seconds_count{method="PUT"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(12*time.Second+300*time.Millisecond,
		Progress{Requests: 1000, Errors: 5, WindowRequests: 200, WindowP99: 42 * time.Millisecond}, 2*time.Second)
	want := "elapsed 12s  requests 1000  rate 100.0/s  errors 5 (0.50%)  p99 42ms"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
}

func TestStatsProgressWindow(t *testing.T) {
	s := NewStats()
	s.Record("GET", 200, nil, 10*time.Millisecond)
	s.Record("GET", 503, nil, 100*time.Millisecond)
	p := s.TakeProgress()
	if p.Requests != 2 || p.Errors != 1 || p.WindowRequests != 2 || p.WindowP99 < 99*time.Millisecond || p.WindowP99 > 101*time.Millisecond {
		t.Errorf("first window %+v", p)
	}
	s.Record("GET", 404, nil, time.Millisecond)
	p = s.TakeProgress()
	if p.Requests != 3 || p.WindowRequests != 1 || p.WindowP99 > 2*time.Millisecond {
		t.Errorf("second window %+v", p)
	}
	sum := s.Summarize(time.Second)
	if sum.Latency.Max != 0.1 || sum.ByMethodStatus["GET"]["404"] != 1 || sum.ErrorRatio != 1.0/3 {
		t.Errorf("summary %+v", sum)
	}
}
