package main

// In-process tests: run is called directly, with its own arguments, environment and
// output, the way main calls it. What belongs to the process alone (signals from outside,
// kill -9, -ldflags, memory and descriptor limits) is tested on the built binary instead
// (process_test.go).

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// getenvFrom serves run's getenv from a KEY=VALUE list, so nothing of the developer's
// environment (PORT, DATA_DIR) leaks in.
func getenvFrom(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// runInProcess is runBinary without a process: run to completion (a run still going after
// timeout fails the test) and main's exit code.
func runInProcess(t *testing.T, timeout time.Duration, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out, errOut testkit.SyncBuffer
	err := run(ctx, args, getenvFrom(env), &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("run(%q) still going after %v\nstdout:\n%s\nstderr:\n%s", args, timeout, out.String(), errOut.String())
	}
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

// startInProcess is startProc without a process: run serves in a goroutine until the test
// ends or p.signal cancels its context, and p.wait returns main's exit code.
func startInProcess(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	delayEnd := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), delayEndKey{}, (<-chan struct{})(delayEnd)))
	p := &proc{
		t:        t,
		cancel:   cancel,
		endDelay: func() { once.Do(func() { close(delayEnd) }) },
		stdout:   &logLines{addr: make(chan string, 1)},
		stderr:   &testkit.SyncBuffer{},
		exited:   make(chan struct{}),
	}
	go func() {
		p.err = run(ctx, args, getenvFrom(env), p.stdout, p.stderr)
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		p.endDelay()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("in-process storage-api did not stop within 30s of its context's end")
		}
		if t.Failed() {
			t.Logf("storage-api stdout:\n%s\nstderr:\n%s", strings.Join(p.stdout.lines, "\n"), p.stderr)
		}
	})
	p.awaitReady(args)
	return p
}

// TestShutdownSequence checks the order of a graceful shutdown by events, not by the clock:
// once shutdown begins (the context run's signal handling cancels), /readyz turns 503 while
// the listener still accepts and /healthz and the API still answer on new connections, for as
// long as -shutdown-delay lasts (here: until the test ends it); only then does the listener
// close, while a request that was in flight throughout still completes; then run returns
// cleanly. The delay is set far longer than the test and every wait is a failure deadline.
func TestShutdownSequence(t *testing.T) {
	// -min-transfer-rate 0: the in-flight request's body pauses on purpose.
	p := startInProcess(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-access-log=false",
		"-shutdown-delay", heldDelay.String(), "-min-transfer-rate", "0")
	if status, _, body, err := do(newClient(1), "GET", p.url+"/readyz", nil, nil); err != nil || status != 200 {
		t.Fatalf("/readyz while serving: %d %s, %v; want 200", status, body, err)
	}
	inFlight := startPausedPut(t, p.url+"/api/buckets/in-flight")

	p.signal(syscall.SIGTERM)
	probeDuringDelay(t, p.url)
	select {
	case <-p.exited:
		t.Fatalf("run returned during the shutdown delay: %v", p.err)
	default:
	}

	p.endShutdownDelay()
	waitListenerClosed(t, p.addr)
	// The listener is closed and the request is still in flight: run must wait for it.
	select {
	case <-p.exited:
		t.Fatalf("run returned with a request in flight: %v", p.err)
	default:
	}
	if status, err := inFlight.finish(); err != nil || status != http.StatusCreated {
		t.Errorf("PUT in flight across the listener's close: %d, %v; want 201", status, err)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after shutdown, want 0\nstderr:\n%s", code, p.stderr)
	}
}
