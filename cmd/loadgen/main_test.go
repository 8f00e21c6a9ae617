package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/api/apitest"
	"github.com/sre-instrumentation/storage-api/internal/cli/clitest"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/loadgen"
	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// The test binary doubles as the loadgen binary: with this variable set it
// runs main() instead of the tests, so the signal test needs no go build.
const childEnv = "LOADGEN_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSIGTERM sends a real SIGTERM to a running loadgen process: it must
// stop, print its summary, counting every request the API answered, and exit 0.
func TestSIGTERM(t *testing.T) {
	// served is closed once the API has answered an object request: traffic flows.
	served := make(chan struct{})
	var once sync.Once
	srv := apitest.Start(t, apitest.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if strings.HasPrefix(r.URL.Path, "/api/") {
				once.Do(func() { close(served) })
			}
		})
	}})

	cmd := exec.Command(os.Args[0], "-target", srv.URL, "-metrics-address", "", "-mode", "scenario",
		"-think", "10ms", "-duration", "0", "-output", "json")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout // stderr: testkit.Start's Out, logged if the test fails
	p := testkit.Start(t, cmd)
	// Signal once traffic flows, so the summary has requests; the timeout only fails the test.
	select {
	case <-served:
	case <-p.Done():
		t.Fatalf("loadgen exited before sending traffic: %v", p.Wait())
	case <-time.After(time.Minute):
		t.Fatal("no object request reached the API within a minute")
	}
	// Stop sends SIGTERM and kills the process only if it has not exited within
	// testkit.StopTimeout: an error is a non-zero exit or a process that did not stop.
	if err := p.Stop(); err != nil {
		t.Fatalf("loadgen after SIGTERM: %v", err)
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	if sum.StoppedBy != "signal" || sum.Requests == 0 {
		t.Errorf("stopped by %q after %d requests", sum.StoppedBy, sum.Requests)
	}
	// The requests in flight at the signal finished and were counted.
	if served := srv.Counts(t, api.BucketPath); !reflect.DeepEqual(sum.ByMethodStatus, served) {
		t.Errorf("summary counts %v\nserver counts  %v", sum.ByMethodStatus, served)
	}
}

// TestExitCodes holds loadgen to the exit statuses both binaries share (internal/cli), run
// in process through run as main calls it.
func TestExitCodes(t *testing.T) {
	srv := apitest.Start(t, apitest.Options{})
	closed := "http://" + testkit.FreeAddr(t) // nothing listens there
	quiet := []string{"-metrics-address", ""}
	clitest.Check(t, "loadgen", run, exitCode, []clitest.Case{
		{Class: clitest.Help, Args: []string{"-h"}},
		{Class: clitest.UnknownFlag, Args: []string{"-speed", "1"}, Mention: []string{"speed"}},
		{Class: clitest.BadValue, Args: []string{"-rate", "fast"}, Mention: []string{"-rate", "fast"}},
		{Class: clitest.BadEnv, Env: map[string]string{"LOADGEN_DURATION": "soon"}, Mention: []string{"LOADGEN_DURATION", "soon"}},
		{Class: clitest.InvalidConfig, Args: []string{"-mode", "rate", "-rate", "-1", "-output", "yaml"}, Mention: []string{"-rate", "-output"}},
		{Class: clitest.Positional, Args: []string{"extra"}, Mention: []string{"extra"}},
		{Class: clitest.Failure, Args: append([]string{"-target", closed, "-ready-timeout", "300ms"}, quiet...), Mention: []string{"not ready"}},
		// Scenario mode: rate mode could exit 3 on a loaded machine.
		{Class: clitest.Success, Args: append([]string{"-target", srv.URL, "-mode", "scenario", "-think", "10ms", "-duration", "200ms"}, quiet...)},
	})
}

// TestRunOutcomes: the outcomes only loadgen has, each with its summary on stdout. An error
// ratio above the limit is a failure (1); a rate not delivered is loadgen's own status 3.
func TestRunOutcomes(t *testing.T) {
	// The API's own fault injection: every object request answered 503, or delayed 300 ms
	// (2 workers then cannot send 50 req/s, so requests go late).
	failing := apitest.Start(t, apitest.Options{Fault: fault.Config{ErrorRatio: 1}})
	slow := apitest.Start(t, apitest.Options{Fault: fault.Config{Latency: 300 * time.Millisecond, LatencyRatio: 1}})
	tests := []struct {
		name   string
		args   []string
		want   int
		stderr string
	}{
		// The limit is inclusive: an error ratio of 1 is within -max-error-ratio 1.
		{"error ratio within the limit", []string{"-target", failing.URL, "-mode", "scenario", "-think", "10ms", "-duration", "300ms", "-max-error-ratio", "1"}, 0, ""},
		{"error ratio above the limit", []string{"-target", failing.URL, "-mode", "scenario", "-think", "10ms", "-duration", "300ms", "-max-error-ratio", "0.1"}, 1, "exceeds -max-error-ratio"},
		{"rate not delivered", []string{"-target", slow.URL, "-mode", "rate", "-rate", "50", "-duration", "500ms", "-concurrency", "1", "-max-concurrency", "2"}, 3, "the asked rate was not delivered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-metrics-address", "", "-output", "json"}, tt.args...)
			code := exitCode(run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr), &stderr)
			if code != tt.want || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("exit status %d, want %d with %q on stderr:\n%s", code, tt.want, tt.stderr, stderr.String())
			}
			var sum loadgen.Summary
			if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Requests == 0 {
				t.Errorf("summary %q (%v): want one with requests, whatever the exit status", stdout.String(), err)
			}
		})
	}
}
