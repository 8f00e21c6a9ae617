package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/loadgen/apitest"
)

// startAPI starts the in-process API on 127.0.0.1.
func startAPI(t *testing.T, api *apitest.Server) string {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv.URL
}

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

// TestSummaryCountsMatchServer runs both modes and compares the summary's
// per-method, per-status counts with the statuses the server sent.
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
			api := &apitest.Server{}
			cfg := testConfig(t, startAPI(t, api), tt.args...)
			sum, err := Run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := api.Counts()
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
	api := &apitest.Server{}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			mu.Lock()
			got = append(got, r.Method+" "+strings.TrimPrefix(r.URL.Path, "/api/buckets/"))
			mu.Unlock()
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
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
	api := &apitest.Server{}
	cfg := testConfig(t, startAPI(t, api), "-mode", "rate", "-rate", "200", "-concurrency", "16", "-duration", "1s", "-mix", "put=1,get=1")
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
	var served int64
	for _, byStatus := range api.Counts() {
		for _, n := range byStatus {
			served += n
		}
	}
	if served != sum.Requests {
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

// TestErrorRatio has the server answer 503 to every 4th request: the summary counts
// each 503 as an error and passes or fails the run by -max-error-ratio (cmd/loadgen
// turns a failed run into exit status 1).
func TestErrorRatio(t *testing.T) {
	tests := []struct {
		maxRatio   string
		wantPassed bool
	}{
		{"0.1", false},
		{"0.5", true},
	}
	for _, tt := range tests {
		t.Run(tt.maxRatio, func(t *testing.T) {
			api := &apitest.Server{FailEvery: 4}
			cfg := testConfig(t, startAPI(t, api), "-mode", "rate", "-rate", "200", "-duration", "500ms", "-max-error-ratio", tt.maxRatio)
			sum, err := Run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Passed() != tt.wantPassed {
				t.Errorf("Passed() = %v with error ratio %.3f and limit %s", sum.Passed(), sum.ErrorRatio, tt.maxRatio)
			}
			var served503 int64
			for _, byStatus := range api.Counts() {
				served503 += byStatus["503"]
			}
			if sum.Errors != served503 || sum.Errors == 0 {
				t.Errorf("errors = %d, server sent %d 503s", sum.Errors, served503)
			}
			if r := sum.ErrorRatio; r < 0.2 || r > 0.3 {
				t.Errorf("error ratio %.3f, want about 0.25", r)
			}
		})
	}
}

// TestTransportErrors points loadgen at a closed port: every request is a
// transport error, counted under status "error".
func TestTransportErrors(t *testing.T) {
	srv := httptest.NewServer(&apitest.Server{})
	target := srv.URL
	srv.Close()
	cfg := testConfig(t, target, "-ready-timeout", "0", "-mode", "rate", "-rate", "50", "-duration", "200ms", "-mix", "get=1")
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
			api := &apitest.Server{}
			cfg := testConfig(t, startAPI(t, api), "-metrics-address", "127.0.0.1:0", "-mode", mode,
				"-think", "10ms", "-rate", "100", "-duration", "0")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			// Cancel once traffic flows (a bounded wait), so the summary has requests.
			go func() {
				deadline := time.Now().Add(10 * time.Second)
				for sumCounts(api.Counts()) == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				cancel()
			}()
			sum, err := Run(ctx, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if sum.StoppedBy != "signal" || sum.Requests == 0 || sum.Requests != sumCounts(api.Counts()) {
				t.Errorf("stopped by %q, requests %d, server saw %d", sum.StoppedBy, sum.Requests, sumCounts(api.Counts()))
			}
		})
	}
}

// TestJSONShape pins the field names other tools read.
func TestJSONShape(t *testing.T) {
	api := &apitest.Server{}
	cfg := testConfig(t, startAPI(t, api), "-mode", "rate", "-rate", "100", "-duration", "300ms")
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

// TestWaitReady checks the /readyz wait: it rides out a few 503s and gives
// up after -ready-timeout with an error (exit status 1 in cmd/loadgen).
func TestWaitReady(t *testing.T) {
	api := &apitest.Server{NotReady: 2}
	cfg := testConfig(t, startAPI(t, api), "-duration", "100ms", "-think", "0")
	if _, err := Run(t.Context(), cfg, io.Discard); err != nil {
		t.Fatalf("ready after two 503s: %v", err)
	}

	never := &apitest.Server{NotReady: math.MaxInt}
	cfg = testConfig(t, startAPI(t, never), "-ready-timeout", "400ms")
	if _, err := Run(t.Context(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("Run against a target never ready = %v; want a \"not ready\" error", err)
	}
	if len(never.Counts()) != 0 {
		t.Errorf("traffic sent to a target that never became ready: %v", never.Counts())
	}
}
