package main

// These tests run the real storage-api binary as a child process on 127.0.0.1 and talk
// to it over HTTP: signals, exit codes, flags and durability are properties of the
// process, which an in-process test cannot show.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// serverBinary is the storage-api executable TestMain builds, with the version and revision
// the -version test expects.
var serverBinary string

const (
	testVersion  = "1.2.3"
	testRevision = "abc"
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "storage-api-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	serverBinary = filepath.Join(dir, "storage-api")
	args := []string{"build", "-o", serverBinary, "-ldflags", "-X main.version=" + testVersion + " -X main.revision=" + testRevision}
	if raceEnabled {
		args = append(args, "-race")
	}
	// go test puts its own GOROOT/bin first in PATH, so this is the same toolchain.
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building storage-api:", err)
		return 1
	}
	return m.Run()
}

// logLines collects the child's stdout, one JSON log line per entry, and reports the
// address from the "storage-api listening" line.
type logLines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	addr    chan string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		var rec struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "storage-api listening" {
			select {
			case l.addr <- rec.Address:
			default:
			}
		}
	}
}

// records returns the log lines parsed as JSON; a line that is not JSON fails the test.
func (l *logLines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	for _, line := range l.lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("stdout line is not JSON (%v): %q", err, line)
			continue
		}
		recs = append(recs, m)
	}
	return recs
}

// childEnv is the child's whole environment: env, plus, for a race-enabled child, a
// short wait at exit (the race runtime's default of 1s would slow every test).
func childEnv(env []string) []string {
	e := append([]string{}, env...)
	if raceEnabled {
		e = append(e, "GORACE=atexit_sleep_ms=50")
	}
	return e
}

// proc is a running storage-api: a child process, or run in this process (cmd nil; see
// startInProcess).
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	cancel context.CancelFunc // in-process: what a SIGINT or SIGTERM does
	// endDelay, in-process, ends -shutdown-delay now (delayEndKey); safe to call twice.
	endDelay func()
	addr     string // host:port it listens on
	url      string // http://addr
	stdout   *logLines
	stderr   *testkit.SyncBuffer
	exited   chan struct{}
	err      error // cmd.Wait's result, set before exited is closed
}

// startProc starts the binary with args and the given environment only (so the
// developer's PORT or DATA_DIR cannot leak in) and waits until /readyz answers 200.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBinary(t, serverBinary, env, args...)
}

// startBinary is startProc for another build of the server.
func startBinary(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := launchBinary(t, bin, env, args...)
	p.awaitReady(args)
	return p
}

// awaitReady waits for the "storage-api listening" log line, then for /readyz to answer 200.
func (p *proc) awaitReady(args []string) {
	p.t.Helper()
	select {
	case p.addr = <-p.stdout.addr:
	case <-p.exited:
		p.t.Fatalf("storage-api %q ended before listening: %v\nstderr:\n%s", args, p.err, p.stderr)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("storage-api %q did not log its address within 20s\nstderr:\n%s", args, p.stderr)
	}
	p.url = "http://" + p.addr
	testkit.WaitHTTP(p.t, p.url+"/readyz", http.StatusOK, 20*time.Second, nil)
}

// launchBinary starts bin without waiting for anything. At cleanup a process still
// running is killed, and a data race it reported fails the test.
func launchBinary(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{
		t:      t,
		cmd:    exec.Command(bin, args...),
		stdout: &logLines{addr: make(chan string, 1)},
		stderr: &testkit.SyncBuffer{},
		exited: make(chan struct{}),
	}
	p.cmd.Env = childEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if s := p.stderr.String(); strings.Contains(s, "DATA RACE") {
			t.Errorf("storage-api reported a data race:\n%s", s)
		}
	})
	return p
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if p.cmd == nil {
		if sig != syscall.SIGINT && sig != syscall.SIGTERM {
			p.t.Fatalf("in-process storage-api: only SIGINT and SIGTERM (a cancelled context), not %v", sig)
		}
		p.cancel()
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// endShutdownDelay ends the -shutdown-delay of an in-process storage-api now, so a test
// decides when the listener closes instead of racing the delay's clock.
func (p *proc) endShutdownDelay() {
	p.t.Helper()
	if p.endDelay == nil {
		p.t.Fatal("only an in-process storage-api's shutdown delay can be ended early")
	}
	p.endDelay()
}

// wait waits at most d for the process to exit and returns its exit code; a process
// still running after d is killed and fails the test.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	if p.cmd == nil {
		select {
		case <-p.exited:
		case <-time.After(d):
			p.t.Fatalf("in-process storage-api still running %v after its context was cancelled\nstderr:\n%s", d, p.stderr)
		}
		return exitCode(p.err, p.stderr)
	}
	select {
	case <-p.exited:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Fatalf("storage-api still running %v after being told to stop\nstderr:\n%s", d, p.stderr)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		p.t.Fatalf("wait: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// runBinary runs the binary to completion (bounded) and returns its exit code and output.
func runBinary(t *testing.T, timeout time.Duration, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, serverBinary, args...)
	cmd.Env = childEnv(env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("storage-api %q still running after %v\nstdout:\n%s\nstderr:\n%s", args, timeout, &out, &errOut)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run storage-api %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// newClient returns a client for callers concurrent callers whose connections all stay
// alive between requests, one per caller. MaxConnsPerHost matters: without it the
// Transport dials an extra connection whenever a request finds no idle one, racing the
// return of a busy one, and keeps the spare. Such a connection dialled just before the
// listener closes sits un-accepted in the backlog and is reset, not refused
// (see shutdown_test.go).
func newClient(callers int) *http.Client {
	tr := &http.Transport{
		MaxConnsPerHost:     callers,
		MaxIdleConnsPerHost: callers,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// do sends a request and returns the status, headers and body; err is a transport error.
func do(c *http.Client, method, url string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	return doCtx(context.Background(), c, method, url, body, header)
}

// doCtx is do with a context (for an httptrace.ClientTrace).
func doCtx(ctx context.Context, c *http.Client, method, url string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}
