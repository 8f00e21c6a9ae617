// Package testkit is the test support every module of the repository shares: the repository
// root, the pinned tools with one rule for a missing one, free loopback addresses, a buffer
// processes can write to concurrently, and long-lived processes whose output a failing test
// shows. It imports only the standard library, so the test modules (test/compose, test/k8s,
// test/k8s/apiserver) can require the service module for it without pulling in its
// dependencies.
package testkit

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot returns the repository root: the nearest directory at or above the working
// directory that holds tools/install.sh. go test runs in the package directory, so this
// works from every module of the repository.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "install.sh")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testkit: no tools/install.sh above the working directory: not inside the repository")
		}
		dir = parent
	}
}

// Tool returns the absolute path of a pinned tool in .tools/bin. The one rule for a missing
// tool: under -short the test is skipped; otherwise it fails, because a check that did not
// run must not look green.
func Tool(t testing.TB, name string) string {
	t.Helper()
	return Require(t, filepath.Join(RepoRoot(t), ".tools", "bin", name), "run tools/install.sh "+name)
}

// Require applies Tool's rule to any file a test needs (a tool outside .tools/bin, a
// generated input): it returns path when it exists, skips under -short, and fails otherwise
// with hint on how to make it.
func Require(t testing.TB, path, hint string) string {
	t.Helper()
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return path
	case !errors.Is(err, fs.ErrNotExist):
		t.Fatal(err)
	case testing.Short():
		t.Skipf("%s is missing (skipped under -short): %s", path, hint)
	default:
		t.Fatalf("%s is missing: %s (or go test -short to skip what needs it)", path, hint)
	}
	return ""
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers: a process's stdout
// and stderr, a server's log read while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns a copy of everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Bytes returns a copy of everything written so far.
func (s *SyncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// Proc is a process started by Start.
type Proc struct {
	Cmd *exec.Cmd
	// Out holds the process's stdout and stderr, unless the caller set Cmd.Stdout or Cmd.Stderr.
	Out  *SyncBuffer
	done chan struct{}
	err  error
}

// StopTimeout bounds how long Start's cleanup waits after SIGTERM before it kills the process.
const StopTimeout = 10 * time.Second

// Start starts cmd for the rest of the test. When the test ends the process gets SIGTERM,
// then SIGKILL after StopTimeout; if the test failed, its output is logged, so a failure shows
// what the server said.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Out: &SyncBuffer{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Out
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), p.Out.String())
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns cmd.Wait's error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM, waits up to StopTimeout, then kills the process; it returns cmd.Wait's
// error. Calling it again, or after the process exited, only returns that error.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// WaitHTTP polls url with GET until it answers want, failing the test after within. A
// non-nil p that exits first fails the test at once, with its output.
func WaitHTTP(t testing.TB, url string, want int, within time.Duration, p *Proc) {
	t.Helper()
	WaitHTTPWith(t, &http.Client{Timeout: time.Second}, nil, url, want, within, p)
}

// WaitHTTPWith is WaitHTTP through client (TLS settings, its own timeout) with header on
// every request (a bearer token).
func WaitHTTPWith(t testing.TB, client *http.Client, header http.Header, url string, want int, within time.Duration, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case <-p.done:
				t.Fatalf("%s exited (%v) before %s answered %d", filepath.Base(p.Cmd.Path), p.err, url, want)
			default:
			}
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within %v (last: %s)", url, want, within, last)
}

// BuildBinaries builds the repository's commands (package paths relative to the root, such as
// "./cmd/storage-api") into dir with the image's build settings: CGO_ENABLED=0 and -trimpath,
// as the Makefile's build target and the Dockerfile run them (test/compose checks those two agree).
// So the tests run the binary that ships, and every non-race build in a test run shares one set of
// compiled packages in the Go build cache instead of compiling the dependencies once per setting.
func BuildBinaries(t testing.TB, dir string, pkgs ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
}
