package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

// boltArgs are the flags of a bolt server on dir.
func boltArgs(dir string) []string {
	return []string{"-listen-address", "127.0.0.1:0", "-storage", "bolt", "-data-dir", dir, "-access-log=false"}
}

// fillBolt starts a server on dir, PUTs objects of the given size under ids obj-0..n-1
// and stops it.
func fillBolt(t *testing.T, dir string, n, size int) {
	t.Helper()
	p := startProc(t, nil, boltArgs(dir)...)
	c := newClient(1)
	for i := range n {
		id := "obj-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if status, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/"+id, body(uint64(i), size), nil); err != nil || status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s %v", id, status, b, err)
		}
	}
	c.CloseIdleConnections()
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// damage rewrites one stored value of the stopped server's file with fn's result.
func damage(t *testing.T, dir, bucket string, key []byte, fn func([]byte) []byte) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, bolt.FileName), 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		return b.Put(key, fn(bytes.Clone(b.Get(key))))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wantRefusal runs the server on dir and wants it to exit 1 at once with one line on
// stderr naming the file and containing want; never a crash dump.
func wantRefusal(t *testing.T, dir, want string) {
	t.Helper()
	code, _, stderr := runBinary(t, 20*time.Second, nil, boltArgs(dir)...)
	path := filepath.Join(dir, bolt.FileName)
	if code != 1 || !strings.Contains(stderr, path) || !strings.Contains(stderr, want) ||
		strings.Count(strings.TrimSpace(stderr), "\n") != 0 || strings.Contains(stderr, "goroutine") {
		t.Fatalf("storage-api on a bad file: exit %d, stderr:\n%s\nwant exit 1 and one line naming %s and %q", code, stderr, path, want)
	}
	t.Logf("refused: %s", strings.TrimSpace(stderr))
}

// TestRefusesTruncatedFile cuts the database file to half its length: the server must
// refuse to start with one clear line (it crashed with SIGSEGV inside bbolt's open).
func TestRefusesTruncatedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fillBolt(t, dir, 24, 256<<10)
	path := filepath.Join(dir, bolt.FileName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, dir, "truncated")
}

// TestRefusesEmptyFile: a 0-byte objects.db used to start an empty store that reported
// ready, hiding whatever happened to the data.
func TestRefusesEmptyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bolt.FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, dir, "empty")
}

// TestRefusesDamagedMetaPages overwrites both meta pages.
func TestRefusesDamagedMetaPages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fillBolt(t, dir, 1, 10)
	f, err := os.OpenFile(filepath.Join(dir, bolt.FileName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{16, int64(os.Getpagesize()) + 16} {
		if _, err := f.WriteAt([]byte("garbage!"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	wantRefusal(t, dir, "bad magic")
}

// TestCorruptObjectIsNeverServed damages one object's data on disk: GET answers 500 with
// a JSON error, logs the id and request id, counts it in
// storage_corruption_detected_total, and a PUT of the id repairs it. The offline check
// reports the id and fails while the damage is there.
func TestCorruptObjectIsNeverServed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fillBolt(t, dir, 2, 300<<10) // obj-a, obj-b
	// The third 64 KiB chunk of obj-b (key: id length, id, chunk index).
	damage(t, dir, "chunks", []byte("\x00\x05obj-b\x00\x00\x00\x02"), func(v []byte) []byte { v[len(v)/2] ^= 1; return v })

	code, stdout, stderr := runBinary(t, 20*time.Second, nil, "check", "-data-dir", dir)
	if code != 1 || !strings.Contains(stdout, "bad\t\"obj-b\"") || strings.Contains(stdout, "\"obj-a\"") ||
		!strings.Contains(stdout, "2 records, 1 bad") {
		t.Fatalf("check of a damaged file: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	p := startProc(t, nil, boltArgs(dir)...)
	c := newClient(1)
	defer c.CloseIdleConnections()
	if _, _, m, _ := do(c, http.MethodGet, p.url+"/metrics", nil, nil); !bytes.Contains(m, []byte(`storage_corruption_detected_total{backend="bolt"} 0`)) {
		t.Errorf("storage_corruption_detected_total not at 0 on start")
	}
	status, h, b, err := do(c, http.MethodGet, p.url+"/api/buckets/obj-b", nil, nil)
	var e struct{ Error string }
	if err != nil || status != http.StatusInternalServerError || json.Unmarshal(b, &e) != nil || e.Error != "stored object is corrupt" {
		t.Fatalf("GET of a corrupt object = %d %q %v; want 500 {\"error\":\"stored object is corrupt\"}", status, b, err)
	}
	if status, _, b, _ := do(c, http.MethodGet, p.url+"/api/buckets/obj-a", nil, nil); status != http.StatusOK || !bytes.Equal(b, body(0, 300<<10)) {
		t.Errorf("GET of the undamaged object = %d, %d bytes", status, len(b))
	}
	if _, _, m, _ := do(c, http.MethodGet, p.url+"/metrics", nil, nil); !bytes.Contains(m, []byte(`storage_corruption_detected_total{backend="bolt"} 1`)) {
		t.Errorf("storage_corruption_detected_total{backend=\"bolt\"} is not 1 after one corrupt read")
	}
	// A PUT repairs it.
	if status, _, b, _ := do(c, http.MethodPut, p.url+"/api/buckets/obj-b", []byte("fresh"), nil); status != http.StatusNoContent {
		t.Fatalf("PUT over the corrupt object = %d %s", status, b)
	}
	if status, _, b, _ := do(c, http.MethodGet, p.url+"/api/buckets/obj-b", nil, nil); status != http.StatusOK || string(b) != "fresh" {
		t.Fatalf("GET after the repair = %d %q", status, b)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// Log lines are flushed at the latest on exit.
	found := false
	for _, rec := range p.stdout.records(t) {
		if rec["msg"] == "stored object is corrupt" && rec["level"] == "ERROR" && rec["id"] == "obj-b" && rec["request_id"] == h.Get("X-Request-Id") {
			found = true
		}
	}
	if !found {
		t.Errorf("no ERROR log line naming id obj-b and request id %q", h.Get("X-Request-Id"))
	}
	if code, stdout, stderr := runBinary(t, 20*time.Second, nil, "check", "-data-dir", dir); code != 0 || !strings.Contains(stdout, "2 records, 0 bad") {
		t.Fatalf("check after the repair: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestGetOfReplacedObjectIsCut replaces a 10 MiB object while a slow client is in the
// middle of reading it: the client gets a short body (the connection is cut), a prefix
// of the version it started, never the rest of the new version appended.
func TestGetOfReplacedObjectIsCut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, nil, boltArgs(dir)...)
	c := newClient(1)
	defer c.CloseIdleConnections()
	oldData, newData := body(1, 10<<20), body(2, 10<<20)
	if status, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/big", oldData, nil); err != nil || status != http.StatusCreated {
		t.Fatalf("PUT: %d %s %v", status, b, err)
	}
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A small receive buffer, so the server blocks early on a slow reader.
	if err := conn.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/buckets/big HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET = %d", resp.StatusCode)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	if status, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/big", newData, nil); err != nil || status != http.StatusNoContent {
		t.Fatalf("PUT of the new version: %d %s %v", status, b, err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	rest, err := io.ReadAll(resp.Body)
	got := append(head, rest...)
	if !bytes.Equal(got, oldData[:len(got)]) {
		t.Fatalf("the body (%d bytes) is not a prefix of the version whose headers were sent: bytes of another version were served", len(got))
	}
	if err == nil || len(got) == len(oldData) {
		t.Fatalf("read %d of %d bytes, error %v: want the transfer cut short (the server had at most a few windows in flight)", len(got), len(oldData), err)
	}
	t.Logf("cut after %d of %d bytes: %v", len(got), len(oldData), err)
}
