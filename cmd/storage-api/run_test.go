package main

// In-process tests: run is called directly, with its own arguments, environment and
// output, the way main calls it. What belongs to the process alone (signals from outside,
// kill -9, -ldflags, memory and descriptor limits) is tested on the built binary instead
// (process_test.go).

import (
	"context"
	"strings"
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
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{
		t:      t,
		cancel: cancel,
		stdout: &logLines{addr: make(chan string, 1)},
		stderr: &testkit.SyncBuffer{},
		exited: make(chan struct{}),
	}
	go func() {
		p.err = run(ctx, args, getenvFrom(env), p.stdout, p.stderr)
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("in-process storage-api did not stop within 30s of its context's end")
		}
		if t.Failed() {
			t.Logf("storage-api stdout:\n%s\nstderr:\n%s", strings.Join(p.stdout.lines, "\n"), p.stderr)
		}
	})
	select {
	case p.addr = <-p.stdout.addr:
	case <-p.exited:
		t.Fatalf("storage-api %q returned before listening: %v\nstderr:\n%s", args, p.err, p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("storage-api %q did not log its address within 20s\nstderr:\n%s", args, p.stderr)
	}
	p.url = "http://" + p.addr
	testkit.WaitHTTP(t, p.url+"/readyz", 200, 20*time.Second, nil)
	return p
}

// TestReadinessInProcess: /readyz is 200 while serving; once shutdown begins (the context
// run's signal handling cancels) it turns 503 during -shutdown-delay while the listener
// still accepts and /healthz and the API still answer; then run returns cleanly.
func TestReadinessInProcess(t *testing.T) {
	p := startInProcess(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-access-log=false", "-shutdown-delay", "3s")
	if status, _, body, err := do(newClient(1), "GET", p.url+"/readyz", nil, nil); err != nil || status != 200 {
		t.Fatalf("/readyz while serving: %d %s, %v; want 200", status, body, err)
	}
	p.signal(syscall.SIGTERM)
	checkShutdownDelay(t, p.url)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after shutdown, want 0\nstderr:\n%s", code, p.stderr)
	}
}
