package loadgen

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
	"github.com/sre-instrumentation/storage-api/internal/fault"
)

// slowAPI is the API with a delay before some answers: delay(n) for the n-th object
// request (from 1). A pattern of delays, which the API's own fault latency (a ratio)
// cannot give.
func slowAPI(t *testing.T, delay func(n int64) time.Duration) *apitest.Server {
	t.Helper()
	var n atomic.Int64
	return apitest.Start(t, apitest.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				if d := delay(n.Add(1)); d > 0 {
					time.Sleep(d)
				}
			}
			next.ServeHTTP(w, r)
		})
	}})
}

// laggingAPI is the API delaying every object request by d, by its own fault injection
// (FAULT_LATENCY with FAULT_LATENCY_RATIO 1).
func laggingAPI(t *testing.T, d time.Duration) *apitest.Server {
	t.Helper()
	return apitest.Start(t, apitest.Options{Fault: fault.Config{Latency: d, LatencyRatio: 1}})
}

// runSummary runs against target with args (metrics off) and returns the summary.
func runSummary(t *testing.T, target string, args ...string) Summary {
	t.Helper()
	sum, err := Run(t.Context(), testConfig(t, target, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// checkAccounting asserts the invariants every rate-mode summary must hold.
func checkAccounting(t *testing.T, sum Summary, srv *apitest.Server, rate float64) {
	t.Helper()
	if sum.Scheduled != sum.Requests+sum.Dropped {
		t.Errorf("scheduled %d != sent %d + dropped %d", sum.Scheduled, sum.Requests, sum.Dropped)
	}
	if sum.Late > sum.Requests {
		t.Errorf("late %d > sent %d", sum.Late, sum.Requests)
	}
	if served := sumCounts(srv.Counts(t, api.BucketPath)); served != sum.Requests || sumCounts(sum.ByMethodStatus) != sum.Requests {
		t.Errorf("sent %d, by_method_status %d, server answered %d", sum.Requests, sumCounts(sum.ByMethodStatus), served)
	}
	// The timetable: every i with start + i/rate before the stop. The window is at least
	// as long as asked (the stop is a timer), so at least rate*duration fell due.
	if want := int64(rate * sum.DurationSeconds); sum.Scheduled < want {
		t.Errorf("scheduled %d over %.3f s at %g/s, want at least %d", sum.Scheduled, sum.DurationSeconds, rate, want)
	}
	if sum.RateDelivered != (sum.Late == 0 && sum.Dropped == 0) {
		t.Errorf("rate_delivered %v with late %d dropped %d", sum.RateDelivered, sum.Late, sum.Dropped)
	}
}

// TestRatePoolGrows: a target slow on 1 request in 5 (200 ms) at 50 req/s needs about
// 10 requests in flight; starting with 1 worker, the pool grows and every scheduled
// request is sent, none late. (With a fixed pool of -concurrency workers, the old pacer
// sent about 22 req/s here and reported nothing.)
func TestRatePoolGrows(t *testing.T) {
	srv := slowAPI(t, func(n int64) time.Duration {
		if n%5 == 0 {
			return 200 * time.Millisecond
		}
		return 0
	})
	sum := runSummary(t, srv.URL, "-mode", "rate", "-rate", "50", "-duration", "1s", "-concurrency", "1")
	checkAccounting(t, sum, srv, 50)
	if !sum.RateDelivered || sum.Dropped != 0 || sum.Late != 0 {
		t.Errorf("delivered %v, late %d, dropped %d", sum.RateDelivered, sum.Late, sum.Dropped)
	}
	// Every fifth request took 200 ms: p90 and above must show it.
	if sum.Latency.P95 < 0.2 || sum.Latency.Max < 0.2 {
		t.Errorf("latency %+v: the 200 ms requests are missing", sum.Latency)
	}
	if sum.ScheduleLag == nil {
		t.Error("no schedule lag reported in rate mode")
	}
}

// TestRateStallAtEnd is the case the old pacer got wrong: the target stalls (600 ms per
// request) for the second half of the run. Every request due during the stall is still
// sent and counted, and its latency shows the stall.
func TestRateStallAtEnd(t *testing.T) {
	const rate, n = 100, 100
	srv := slowAPI(t, func(i int64) time.Duration {
		if i > n/2 {
			return 600 * time.Millisecond
		}
		return 0
	})
	sum := runSummary(t, srv.URL, "-mode", "rate", "-rate", "100", "-duration", "1s", "-concurrency", "2")
	checkAccounting(t, sum, srv, rate)
	if !sum.RateDelivered || sum.Dropped != 0 || sum.Late != 0 {
		t.Errorf("delivered %v, late %d, dropped %d", sum.RateDelivered, sum.Late, sum.Dropped)
	}
	// At least the second half took 600 ms: p95 and p99 are at least that.
	if sum.Latency.P95 < 0.6 || sum.Latency.P99 < 0.6 {
		t.Errorf("latency %+v: p95/p99 hide a 600 ms stall of half the requests", sum.Latency)
	}
}

// TestRateNotDelivered: at the -max-concurrency bound, due requests wait (late, with the
// wait in their latency) and those still waiting at the end are dropped; the run warns
// reports the rate not delivered (cmd/loadgen exits 3 on it).
func TestRateNotDelivered(t *testing.T) {
	srv := laggingAPI(t, 300*time.Millisecond)
	sum := runSummary(t, srv.URL, "-mode", "rate", "-rate", "100", "-duration", "1s",
		"-concurrency", "1", "-max-concurrency", "4")
	checkAccounting(t, sum, srv, 100)
	// 4 workers at >= 300 ms each send at most 4/0.3 = 13.3 req/s, so in 1 s (plus the
	// final in-flight requests) at most 4*ceil(run/0.3) of 100 due requests are sent.
	if sum.RateDelivered || sum.Dropped < 50 || sum.Late == 0 {
		t.Errorf("delivered %v, late %d, dropped %d of %d", sum.RateDelivered, sum.Late, sum.Dropped, sum.Scheduled)
	}
	// Every request took at least 300 ms at the server.
	if sum.Latency.P50 < 0.3 {
		t.Errorf("p50 %v below the server's 300 ms", sum.Latency.P50)
	}
}

// TestRateMetricsAccount: the metrics say what the summary says.
func TestRateMetricsAccount(t *testing.T) {
	srv := laggingAPI(t, 300*time.Millisecond)
	cfg := testConfig(t, srv.URL, "-mode", "rate", "-rate", "50", "-duration", "500ms", "-concurrency", "1", "-max-concurrency", "2")
	m := NewMetrics()
	sum, err := runWith(t.Context(), cfg, io.Discard, m)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		got  float64
		want int64
	}{
		"loadgen_requests_scheduled_total": {testutil.ToFloat64(m.scheduled), sum.Scheduled},
		"loadgen_requests_late_total":      {testutil.ToFloat64(m.late), sum.Late},
		"loadgen_requests_dropped_total":   {testutil.ToFloat64(m.dropped), sum.Dropped},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, summary says %d", name, c.got, c.want)
		}
	}
	// loadgen_requests_total has a series per method and status, each equal to the summary's count.
	var series int
	for method, byStatus := range sum.ByMethodStatus {
		for status, n := range byStatus {
			series++
			if got := testutil.ToFloat64(m.requests.WithLabelValues(method, status)); got != float64(n) {
				t.Errorf("loadgen_requests_total{method=%q,status=%q} = %v, summary says %d", method, status, got, n)
			}
		}
	}
	if n := testutil.CollectAndCount(m.requests); n != series {
		t.Errorf("loadgen_requests_total has %d series, the summary %d", n, series)
	}
	if sum.Dropped == 0 || sum.Late == 0 {
		t.Errorf("late %d dropped %d: the test did not reach the bound", sum.Late, sum.Dropped)
	}
}
