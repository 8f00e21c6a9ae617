package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// testConfig is a short run against target with metrics switched off.
func testConfig(t *testing.T, target string, args ...string) Config {
	t.Helper()
	base := []string{"-target", target, "-metrics-address", "", "-ready-timeout", "5s"}
	c, err := ParseConfig(append(base, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sumCounts(m map[string]map[string]int64) int64 {
	var n int64
	for _, byStatus := range m {
		for _, v := range byStatus {
			n += v
		}
	}
	return n
}

// TestSummaryCountsMatchServer runs every mode against the real API and compares the
// summary's per-method, per-status counts with those the server's metrics recorded.
func TestSummaryCountsMatchServer(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		// Few ids and several users: GETs and DELETEs race and find nothing.
		{"scenario", []string{"-mode", "scenario", "-concurrency", "6", "-ids", "3", "-think", "20ms", "-duration", "1s", "-size", "16-256"}},
		{"script", []string{"-mode", "script", "-concurrency", "6", "-ids", "3", "-think", "20ms", "-duration", "1s", "-size", "16-256"}},
		{"rate", []string{"-mode", "rate", "-rate", "150", "-concurrency", "4", "-ids", "5", "-duration", "1s", "-mix", "put=2,get=2,head=1,delete=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := apitest.Start(t, apitest.Options{})
			cfg := testConfig(t, srv.URL, tt.args...)
			sum, err := Run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := srv.Counts(t, api.BucketPath)
			if !reflect.DeepEqual(sum.ByMethodStatus, want) {
				t.Errorf("summary counts %v\nserver counts  %v", sum.ByMethodStatus, want)
			}
			if sum.Requests != sumCounts(want) || sum.Requests < 20 {
				t.Errorf("requests = %d, server saw %d", sum.Requests, sumCounts(want))
			}
			if sum.Errors != 0 || sum.TransportErrors != 0 || sum.StoppedBy != "duration" {
				t.Errorf("errors %d transport %d stopped by %s", sum.Errors, sum.TransportErrors, sum.StoppedBy)
			}
			if tt.name != "rate" {
				for _, m := range []string{"PUT", "GET", "DELETE"} {
					if len(sum.ByMethodStatus[m]) == 0 {
						t.Errorf("scenario sent no %s", m)
					}
				}
				if len(sum.ByMethodStatus["HEAD"]) != 0 {
					t.Errorf("scenario sent HEAD")
				}
			}
		})
	}
}

// TestScriptModeIDs: in script mode task i uses id i mod ids, each task PUT, GET, DELETE in turn, as the
// original script did; with one user nothing races, so nothing is ever missing.
func TestScriptModeIDs(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := apitest.Start(t, apitest.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				mu.Lock()
				got = append(got, r.Method+" "+strings.TrimPrefix(r.URL.Path, "/api/buckets/"))
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	}})
	cfg := testConfig(t, srv.URL, "-mode", "script", "-concurrency", "1", "-ids", "3", "-think", "0s", "-duration", "300ms")
	sum, err := Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 9 {
		t.Fatalf("only %d requests: %q", len(got), got)
	}
	for i, req := range got {
		task := i / 3
		want := []string{"PUT", "GET", "DELETE"}[i%3] + " obj-" + strconv.Itoa(task%3)
		if req != want {
			t.Fatalf("request %d = %q, want %q (all: %q)", i, req, want, got[:min(len(got), 12)])
		}
	}
	for m, byStatus := range sum.ByMethodStatus {
		if byStatus["404"] != 0 {
			t.Errorf("%s answered 404 %d times: one user in order never misses", m, byStatus["404"])
		}
	}
}

// TestRateModeAccounting checks rate mode by counts, not speed (how close a loaded machine
// comes to 200 req/s is a benchmark's business): the timetable of 200 req/s over 1 s has
// exactly 200 slots, each one sent or dropped, every sent one reached the server, late ones
// are among the sent, and the rate is reported as delivered exactly when none was late or dropped.
func TestRateModeAccounting(t *testing.T) {
	srv := apitest.Start(t, apitest.Options{})
	cfg := testConfig(t, srv.URL, "-mode", "rate", "-rate", "200", "-concurrency", "16", "-duration", "1s", "-mix", "put=1,get=1")
	sum, err := Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scheduled != 200 {
		t.Errorf("scheduled %d, want 200 (200 req/s for 1 s)", sum.Scheduled)
	}
	if sum.Requests+sum.Dropped != sum.Scheduled {
		t.Errorf("requests %d + dropped %d != scheduled %d", sum.Requests, sum.Dropped, sum.Scheduled)
	}
	if sum.Requests == 0 || sum.Late > sum.Requests {
		t.Errorf("requests %d, late %d: want some requests, late among them", sum.Requests, sum.Late)
	}
	if served := sumCounts(srv.Counts(t, api.BucketPath)); served != sum.Requests {
		t.Errorf("the server answered %d requests, the summary counts %d", served, sum.Requests)
	}
	if want := sum.Late == 0 && sum.Dropped == 0; sum.RateDelivered != want {
		t.Errorf("rate_delivered = %v with %d late and %d dropped", sum.RateDelivered, sum.Late, sum.Dropped)
	}
	if sum.DurationSeconds <= 0 || math.Abs(sum.AchievedRate-float64(sum.Requests)/sum.DurationSeconds) > 1e-6 {
		t.Errorf("achieved_rate %v is not requests %d / duration %v s", sum.AchievedRate, sum.Requests, sum.DurationSeconds)
	}
	if sum.TargetRate != 200 {
		t.Errorf("target_rate = %v", sum.TargetRate)
	}
}

// TestErrorRatio injects errors with the API's own fault injector (FAULT_ERROR_RATIO):
// the summary counts as errors exactly the 5xx answers the server recorded, its error
// ratio is theirs over all answers, and it passes or fails the run by -max-error-ratio,
// the limit included (cmd/loadgen turns a failed run into exit status 1). Pass and fail
// are asserted at ratios 0 and 1, whose outcome is certain; the counts must match at any
// ratio.
func TestErrorRatio(t *testing.T) {
	tests := []struct {
		faultRatio float64
		maxRatio   string
		wantPassed bool
	}{
		{0, "0", true}, // 404s are answers, not errors
		{0.5, "1", true},
		{1, "0.5", false},
		{1, "1", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("fault %g limit %s", tt.faultRatio, tt.maxRatio), func(t *testing.T) {
			srv := apitest.Start(t, apitest.Options{Fault: fault.Config{ErrorRatio: tt.faultRatio}})
			cfg := testConfig(t, srv.URL, "-mode", "rate", "-rate", "200", "-duration", "500ms", "-max-error-ratio", tt.maxRatio)
			sum, err := Run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			served := srv.Counts(t, api.BucketPath)
			var served5xx int64
			for _, byStatus := range served {
				for status, n := range byStatus {
					if code, _ := strconv.Atoi(status); code >= 500 {
						served5xx += n
					}
				}
			}
			if sum.Requests == 0 || sum.Requests != sumCounts(served) {
				t.Fatalf("requests = %d, the server answered %d", sum.Requests, sumCounts(served))
			}
			if sum.Errors != served5xx {
				t.Errorf("errors = %d, the server answered %d with 5xx", sum.Errors, served5xx)
			}
			if want := float64(served5xx) / float64(sumCounts(served)); sum.ErrorRatio != want {
				t.Errorf("error ratio %v, the server's %v", sum.ErrorRatio, want)
			}
			if sum.Passed() != tt.wantPassed {
				t.Errorf("Passed() = %v with error ratio %.3f and limit %s", sum.Passed(), sum.ErrorRatio, tt.maxRatio)
			}
		})
	}
}

// TestTransportErrors points loadgen at a port nothing listens on: every request is a
// transport error, counted under status "error".
func TestTransportErrors(t *testing.T) {
	cfg := testConfig(t, "http://"+testkit.FreeAddr(t), "-ready-timeout", "0", "-mode", "rate", "-rate", "50", "-duration", "200ms", "-mix", "get=1")
	sum, err := Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Requests == 0 || sum.TransportErrors != sum.Requests || sum.Errors != sum.Requests ||
		sum.ByMethodStatus["GET"][StatusError] != sum.Requests || sum.ErrorRatio != 1 {
		t.Errorf("unexpected summary %+v", sum)
	}
	if sum.Passed() != true { // default -max-error-ratio 1 never fails
		t.Errorf("default limit failed the run")
	}
}

// TestStopByContext stands in for SIGTERM: cancelling the context stops an
// unbounded run, and the summary counts every request the server saw.
func TestStopByContext(t *testing.T) {
	for _, mode := range []string{ModeScenario, ModeRate} {
		t.Run(mode, func(t *testing.T) {
			// The deadline only fails a run that never sent anything.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			// Cancel once the server has answered a request, so the summary has some.
			var once sync.Once
			srv := apitest.Start(t, apitest.Options{Wrap: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(w, r)
					if strings.HasPrefix(r.URL.Path, "/api/") {
						once.Do(cancel)
					}
				})
			}})
			cfg := testConfig(t, srv.URL, "-metrics-address", "127.0.0.1:0", "-mode", mode,
				"-think", "10ms", "-rate", "100", "-duration", "0")
			sum, err := Run(ctx, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			served := srv.Counts(t, api.BucketPath)
			if sum.StoppedBy != "signal" || sum.Requests == 0 || !reflect.DeepEqual(sum.ByMethodStatus, served) {
				t.Errorf("stopped by %q, requests %d %v, server saw %v", sum.StoppedBy, sum.Requests, sum.ByMethodStatus, served)
			}
		})
	}
}

// TestJSONShape pins the field names other tools read.
func TestJSONShape(t *testing.T) {
	srv := apitest.Start(t, apitest.Options{})
	cfg := testConfig(t, srv.URL, "-mode", "rate", "-rate", "100", "-duration", "300ms")
	sum, err := Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := sum.WriteJSON(&stdout); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mode", "duration_seconds", "scheduled", "requests", "late", "dropped", "rate_delivered", "errors", "error_ratio", "achieved_rate",
		"by_method_status", "transport_errors", "latency_seconds"} {
		if _, ok := got[k]; !ok {
			t.Errorf("summary lacks %q: %s", k, stdout.String())
		}
	}
	lat, _ := got["latency_seconds"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p95", "p99", "max"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latency_seconds.%s = %v", k, lat[k])
		}
	}
	if lat["p50"].(float64) > lat["p99"].(float64) || lat["p99"].(float64) > lat["max"].(float64) {
		t.Errorf("quantiles out of order: %v", lat)
	}
	if got["mode"] != "rate" || strings.Count(strings.TrimSpace(stdout.String()), "\n") != 0 {
		t.Errorf("want one JSON line in rate mode, got %s", stdout.String())
	}
}

func TestTextSummary(t *testing.T) {
	sum := Summary{Mode: "rate", Target: "http://x", StoppedBy: "duration", DurationSeconds: 2, Scheduled: 4, Requests: 3, Late: 1, Dropped: 1, Errors: 1,
		ErrorRatio: 1.0 / 3, MaxErrorRatio: 1, AchievedRate: 1.5, TargetRate: 2, TransportErrors: 1,
		ByMethodStatus: map[string]map[string]int64{"GET": {"200": 1, "error": 1}, "PUT": {"201": 1}},
		Latency:        Latency{P50: 0.0012, P90: 0.0031, P95: 0.1, P99: 0.25, Max: 1.5}}
	var b strings.Builder
	if err := sum.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	// Compare with runs of spaces squeezed: the column widths are tabwriter's.
	text := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{"requests 4 scheduled: 3 sent (1 of them late), 1 dropped", "WARNING the asked rate was not delivered: 1 late, 1 dropped",
		"1.5 req/s achieved, 2.0 req/s asked", "33.33%", "p95 100ms", "p99 250ms", "max 1.5s",
		"GET 200 1 GET error 1 PUT 201 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("text summary lacks %q:\n%s", want, b.String())
		}
	}
}

// TestWaitReady checks the /readyz wait against the API's own readiness: loadgen rides
// out 503s, sends traffic only once the API is ready, and gives up after -ready-timeout
// with an error (exit status 1 in cmd/loadgen).
func TestWaitReady(t *testing.T) {
	// Not ready for the first two probes, as during a shutdown; ready from the third on.
	var probes atomic.Int64
	srv := apitest.Start(t, apitest.Options{
		ShuttingDown: func() bool { return probes.Add(1) <= 2 },
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/api/") && probes.Load() < 3 {
					t.Errorf("%s %s before /readyz answered 200", r.Method, r.URL.Path)
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	cfg := testConfig(t, srv.URL, "-duration", "100ms", "-think", "0")
	if _, err := Run(t.Context(), cfg, io.Discard); err != nil {
		t.Fatalf("ready after two 503s: %v", err)
	}
	if got, want := srv.Counts(t, "/readyz"), map[string]map[string]int64{"GET": {"503": 2, "200": 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("/readyz answered %v, want %v: probing must stop at the first 200", got, want)
	}

	never := apitest.Start(t, apitest.Options{ShuttingDown: func() bool { return true }})
	// A bounded run, so that a broken wait ends and fails the test instead of hanging it.
	cfg = testConfig(t, never.URL, "-ready-timeout", "400ms", "-duration", "100ms")
	if _, err := Run(t.Context(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("Run against a target never ready = %v; want a \"not ready\" error", err)
	}
	if got := never.Counts(t, api.BucketPath); len(got) != 0 {
		t.Errorf("traffic sent to a target that never became ready: %v", got)
	}
	if got := never.Counts(t, "/readyz"); got["GET"]["503"] == 0 || len(got) != 1 || len(got["GET"]) != 1 {
		t.Errorf("/readyz of a target never ready answered %v, want only 503s", got)
	}
}
