// Package s3e2e tests the storage-api binary with the s3 backend end to end: two API
// processes (stateless replicas) sharing one bucket of a real versitygw, and what clients
// see while that server is down and after it comes back.
package s3e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/storage/s3/s3test"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

var client = &http.Client{Timeout: 15 * time.Second}

// buildAPI builds cmd/storage-api once per test binary run.
func buildAPI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testkit.BuildBinaries(t, dir, "./cmd/storage-api")
	return filepath.Join(dir, "storage-api")
}

type api struct {
	url  string
	proc *testkit.Proc
}

// startAPI runs storage-api with the s3 backend on a free port and waits until /healthz
// answers; it is stopped (SIGTERM) when the test ends, its output logged if the test failed.
func startAPI(t *testing.T, bin string, srv *s3test.Server, bucket, name string, env ...string) *api {
	t.Helper()
	addr := testkit.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), srv.Env()...)
	cmd.Env = append(cmd.Env,
		"LISTEN_ADDRESS="+addr, "PORT=",
		"STORAGE_BACKEND=s3", "S3_BUCKET="+bucket, "S3_PREFIX=e2e/", "S3_ENDPOINT="+srv.Endpoint, "S3_PATH_STYLE=true",
		"ACCESS_LOG=false", "SHUTDOWN_TIMEOUT=2s", "SHUTDOWN_DELAY=0s",
	)
	cmd.Env = append(cmd.Env, env...)
	a := &api{url: "http://" + addr, proc: testkit.Start(t, cmd)}
	testkit.WaitHTTP(t, a.url+"/healthz", http.StatusOK, 10*time.Second, a.proc)
	return a
}

type response struct {
	status int
	header http.Header
	body   string
}

func (a *api) do(t *testing.T, method, path, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (a *api) expect(t *testing.T, method, path, body string, want int, header ...string) response {
	t.Helper()
	r := a.do(t, method, path, body, header...)
	if r.status != want {
		t.Fatalf("%s %s%s = %d %q, want %d", method, a.url, path, r.status, r.body, want)
	}
	return r
}

// waitReady polls /readyz until it answers want, for at most 15s.
func (a *api) waitReady(t *testing.T, want int) {
	t.Helper()
	testkit.WaitHTTP(t, a.url+"/readyz", want, 15*time.Second, a.proc)
}

// metric returns the sum of the samples of a counter-like series matching the regexp.
func (a *api) metric(t *testing.T, re string) float64 {
	t.Helper()
	body := a.expect(t, "GET", "/metrics", "", 200).body
	sum := 0.0
	for _, m := range regexp.MustCompile(`(?m)^`+re+` (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

func TestTwoReplicasShareBucket(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	bin := buildAPI(t)
	a := startAPI(t, bin, srv, bucket, "a")
	b := startAPI(t, bin, srv, bucket, "b")
	a.waitReady(t, 200)
	b.waitReady(t, 200)

	// An id with an escaped slash, a space and non-ASCII: stored under a single key.
	const path = "/api/buckets/dir%2Fwith%20space-%C3%BC"
	put := a.expect(t, "PUT", path, `{"n":1}`, 201, "Content-Type", "application/json")
	got := b.expect(t, "GET", path, "", 200)
	if got.body != `{"n":1}` || got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET through b = %q (%s), want the PUT through a", got.body, got.header.Get("Content-Type"))
	}
	if etag := got.header.Get("ETag"); etag == "" || (put.header.Get("ETag") != "" && etag != put.header.Get("ETag")) {
		t.Fatalf("ETag through b = %q, PUT through a gave %q", etag, put.header.Get("ETag"))
	}
	b.expect(t, "GET", path, "", 304, "If-None-Match", got.header.Get("ETag"))
	b.expect(t, "PUT", path, "v2", 204, "Content-Type", "text/plain")
	if r := a.expect(t, "GET", path, "", 200); r.body != "v2" || r.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("GET through a after PUT through b = %q (%s)", r.body, r.header.Get("Content-Type"))
	}
	a.expect(t, "HEAD", path, "", 200)
	b.expect(t, "DELETE", path, "", 204)
	a.expect(t, "GET", path, "", 404)
	a.expect(t, "DELETE", path, "", 404)
	a.expect(t, "PUT", "/api/buckets/kept", "before the outage", 201, "Content-Type", "text/plain")

	// The object store goes away: both replicas answer 503 with a JSON error, and
	// fail readiness; the failures are counted with backend="s3".
	srv.Stop()
	errorsBefore := a.metric(t, `storage_operation_duration_seconds_count\{backend="s3",operation="get",result="error"\}`)
	for _, r := range []response{
		a.do(t, "GET", "/api/buckets/kept", ""),
		b.do(t, "PUT", "/api/buckets/new", "x", "Content-Type", "text/plain"),
		b.do(t, "DELETE", "/api/buckets/kept", ""),
		a.do(t, "HEAD", "/api/buckets/kept", ""),
	} {
		if r.status != 503 {
			t.Errorf("with the object store down: status %d %q, want 503", r.status, r.body)
		}
		if r.body != "" { // HEAD has none
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
				t.Errorf("503 body %q is not a JSON error", r.body)
			}
		}
	}
	a.waitReady(t, 503)
	b.waitReady(t, 503)
	if n := a.metric(t, `storage_operation_duration_seconds_count\{backend="s3",operation="get",result="error"\}`); n != errorsBefore+1 {
		t.Errorf("storage get errors counted: %v, want %v", n, errorsBefore+1)
	}

	// It comes back on the same address: both recover without a restart.
	srv.Restart()
	a.waitReady(t, 200)
	b.waitReady(t, 200)
	if r := b.expect(t, "GET", "/api/buckets/kept", "", 200); r.body != "before the outage" {
		t.Fatalf("after recovery GET = %q", r.body)
	}
	b.expect(t, "PUT", "/api/buckets/new", "after", 201, "Content-Type", "text/plain")
	if r := a.expect(t, "GET", "/api/buckets/new", "", 200); r.body != "after" {
		t.Fatalf("after recovery GET through a = %q", r.body)
	}
}

// TestPreconditions: without -s3-conditional-writes a PUT or DELETE carrying a
// precondition is refused with 501 and changes nothing; with it, preconditions hold
// across two replicas sharing the bucket.
func TestPreconditions(t *testing.T) {
	srv := s3test.Start(t)
	bin := buildAPI(t)

	plain := startAPI(t, bin, srv, srv.NewBucket(t), "plain")
	etag := plain.expect(t, "PUT", "/api/buckets/p", "v1", 201).header.Get("Etag")
	for _, c := range []struct{ method, header, value string }{
		{"PUT", "If-Match", etag}, {"PUT", "If-None-Match", "*"}, {"DELETE", "If-Match", etag},
	} {
		r := plain.expect(t, c.method, "/api/buckets/p", "v2", 501, c.header, c.value)
		if !strings.Contains(r.body, `"error"`) || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with %s: body %q, want a JSON error", c.method, c.header, r.body)
		}
	}
	if got := plain.expect(t, "GET", "/api/buckets/p", "", 200).body; got != "v1" {
		t.Fatalf("after refused conditional writes the object is %q, want v1", got)
	}

	bucket := srv.NewBucket(t)
	a := startAPI(t, bin, srv, bucket, "a", "S3_CONDITIONAL_WRITES=true")
	b := startAPI(t, bin, srv, bucket, "b", "S3_CONDITIONAL_WRITES=true")
	a.expect(t, "PUT", "/api/buckets/x", "from a", 201, "If-None-Match", "*")
	b.expect(t, "PUT", "/api/buckets/x", "from b", 412, "If-None-Match", "*")
	etagA := b.expect(t, "GET", "/api/buckets/x", "", 200).header.Get("Etag")
	etagB := b.expect(t, "PUT", "/api/buckets/x", "from b", 204, "If-Match", etagA).header.Get("Etag")
	a.expect(t, "PUT", "/api/buckets/x", "lost update", 412, "If-Match", etagA)
	a.expect(t, "DELETE", "/api/buckets/x", "", 412, "If-Match", etagA)
	if got := a.expect(t, "GET", "/api/buckets/x", "", 200).body; got != "from b" {
		t.Fatalf("object is %q, want %q", got, "from b")
	}
	a.expect(t, "DELETE", "/api/buckets/x", "", 204, "If-Match", etagB)
	b.expect(t, "GET", "/api/buckets/x", "", 404)
}
