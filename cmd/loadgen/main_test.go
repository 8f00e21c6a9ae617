package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/loadgen"
	"github.com/sre-instrumentation/storage-api/internal/loadgen/apitest"
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
// stop, print its summary and exit 0.
func TestSIGTERM(t *testing.T) {
	api := &apitest.Server{}
	srv := httptest.NewServer(api)
	defer srv.Close()

	cmd := exec.Command(os.Args[0], "-target", srv.URL, "-metrics-address", "", "-mode", "scenario",
		"-think", "10ms", "-duration", "0", "-output", "json")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal once traffic flows (bounded wait), so the summary has requests.
	deadline := time.Now().Add(10 * time.Second)
	for len(api.Counts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loadgen exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("loadgen did not stop after SIGTERM; stderr:\n%s", stderr.String())
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	if sum.StoppedBy != "signal" || sum.Requests == 0 {
		t.Errorf("stopped by %q after %d requests", sum.StoppedBy, sum.Requests)
	}
}

func TestRunExitCodes(t *testing.T) {
	api := &apitest.Server{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	getenv := func(k string) string {
		return map[string]string{"LOADGEN_TARGET": srv.URL, "LOADGEN_METRICS_ADDRESS": ""}[k]
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"finished", []string{"-mode", "rate", "-rate", "50", "-duration", "200ms"}, 0},
		{"bad flag", []string{"-mode", "burst"}, 2},
		{"bad mix", []string{"-mix", "get=x"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t.Context(), tt.args, getenv, io.Discard, io.Discard); got != tt.want {
				t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
