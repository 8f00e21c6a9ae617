package testkit

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot = %s, which has no go.mod: %v", root, err)
	}
	if wd, _ := os.Getwd(); !strings.HasPrefix(wd, root) {
		t.Fatalf("RepoRoot = %s is not above the working directory %s", root, wd)
	}
}

// TestRequireRule runs Require on a missing file in a child test process, with and without
// -short: skipped under -short, failed otherwise.
func TestRequireRule(t *testing.T) {
	if os.Getenv("TESTKIT_CHILD") == "1" {
		Require(t, filepath.Join(t.TempDir(), "missing"), "nothing to do")
		t.Log("reached after a missing file")
		return
	}
	for _, c := range []struct {
		short   bool
		wantErr bool
		want    string
	}{
		{short: true, wantErr: false, want: "--- SKIP"},
		{short: false, wantErr: true, want: "--- FAIL"},
	} {
		args := []string{"-test.run=^TestRequireRule$", "-test.v"}
		if c.short {
			args = append(args, "-test.short")
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "TESTKIT_CHILD=1")
		out, err := cmd.CombinedOutput()
		if (err != nil) != c.wantErr || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "reached after") {
			t.Errorf("short=%v: err=%v, output:\n%s\nwant %q", c.short, err, out, c.want)
		}
	}
	if p := Require(t, os.Args[0], ""); p != os.Args[0] {
		t.Errorf("Require(existing) = %q", p)
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q, want 127.0.0.1", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr's %s cannot be listened on: %v", addr, err)
	}
	l.Close()
	if FreePort(t) <= 0 {
		t.Fatal("FreePort not positive")
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.Bytes()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}

func TestStartStop(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", "trap 'echo stopping; exit 0' TERM; echo started; while :; do sleep 0.05; done"))
	for !strings.Contains(p.Out.String(), "started") {
		time.Sleep(10 * time.Millisecond)
		select {
		case <-p.Done():
			t.Fatalf("exited early: %s", p.Out)
		default:
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v (output %q)", err, p.Out)
	}
	if !strings.Contains(p.Out.String(), "stopping") {
		t.Fatalf("no SIGTERM handled: %q", p.Out)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestWaitHTTPWith: the client and the header reach the server. The TLS server is ready
// only to a request with the token, so without either the wait could never succeed.
func TestWaitHTTPWith(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	WaitHTTPWith(t, srv.Client(), http.Header{"Authorization": {"Bearer t0ken"}}, srv.URL+"/readyz", http.StatusNoContent, 20*time.Second, nil)
}
