package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

// setFileSizeLimit sets the running child's RLIMIT_FSIZE soft limit (prlimit(2)), the
// way `ulimit -f` would have: writes past it fail with EFBIG (the Go runtime ignores
// SIGXFSZ). The hard limit is left alone so the test can lift the soft one again.
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	var old syscall.Rlimit
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE,
		0, uintptr(unsafe.Pointer(&old)), 0, 0); errno != 0 {
		t.Fatalf("prlimit get: %v", errno)
	}
	lim := syscall.Rlimit{Cur: min(limit, old.Max), Max: old.Max}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE,
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0); errno != 0 {
		t.Fatalf("prlimit set: %v", errno)
	}
}

// TestDiskFull: when bolt's file may not grow (a file size limit: the same EFBIG/ENOSPC
// path as a full disk), writes answer 507 with a JSON error naming the cause, reads and
// /readyz keep working, and writes work again once there is room, without a restart.
// (The server used to answer 500 "internal error".)
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, nil, boltArgs(dir)...)
	c := newClient(1)
	defer c.CloseIdleConnections()
	small := body(1, 1000)
	if status, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/small", small, nil); err != nil || status != http.StatusCreated {
		t.Fatalf("PUT small: %d %s %v", status, b, err)
	}
	st, err := os.Stat(filepath.Join(dir, bolt.FileName))
	if err != nil {
		t.Fatal(err)
	}
	setFileSizeLimit(t, p.cmd.Process.Pid, uint64(st.Size()))

	big := body(2, 8<<20)
	for _, req := range []struct{ method, id string }{{http.MethodPut, "big"}, {http.MethodPut, "small"}} {
		data := big
		status, h, b, err := do(c, req.method, p.url+"/api/buckets/"+req.id, data, nil)
		var e struct{ Error string }
		if err != nil || status != http.StatusInsufficientStorage || json.Unmarshal(b, &e) != nil ||
			!strings.Contains(e.Error, "insufficient storage") || h.Get("Retry-After") != "" {
			t.Fatalf("%s %s with the file at its size limit = %d %q (Retry-After %q) %v; want 507 and a JSON error naming the cause, no Retry-After",
				req.method, req.id, status, b, h.Get("Retry-After"), err)
		}
	}
	if status, _, b, _ := do(c, http.MethodGet, p.url+"/api/buckets/small", nil, nil); status != http.StatusOK || string(b) != string(small) {
		t.Errorf("GET while writes fail = %d, %d bytes; want the stored object", status, len(b))
	}
	if status, _, b, _ := do(c, http.MethodGet, p.url+"/readyz", nil, nil); status != http.StatusOK {
		t.Errorf("/readyz while writes fail = %d %s; want 200 (reads still work)", status, b)
	}

	setFileSizeLimit(t, p.cmd.Process.Pid, ^uint64(0))
	if status, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/big", big, nil); err != nil || status != http.StatusCreated {
		t.Fatalf("PUT big after the limit was lifted = %d %s %v", status, b, err)
	}
	if status, _, b, _ := do(c, http.MethodGet, p.url+"/api/buckets/big", nil, nil); status != http.StatusOK || len(b) != len(big) {
		t.Errorf("GET big = %d, %d bytes", status, len(b))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	found := false
	for _, rec := range p.stdout.records(t) {
		if rec["msg"] == "storage full" && rec["level"] == "ERROR" {
			found = true
		}
	}
	if !found {
		t.Error("no ERROR log line \"storage full\"")
	}
	checkBolt(t, filepath.Join(dir, bolt.FileName))
}
