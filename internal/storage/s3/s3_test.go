package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/s3"
	"github.com/sre-instrumentation/storage-api/internal/storage/s3/s3test"
	"github.com/sre-instrumentation/storage-api/internal/storage/storagetest"
)

func open(t *testing.T, srv *s3test.Server, cfg s3.Config) *s3.Store {
	t.Helper()
	cfg.Endpoint = srv.Endpoint
	cfg.PathStyle = true
	s, err := s3.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the backend suite against a real versitygw, both with a key prefix
// (each subtest under its own prefix of one bucket) and without (a bucket per subtest).
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	t.Run("Prefix", func(t *testing.T) {
		bucket := srv.NewBucket(t)
		var n atomic.Int64
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return open(t, srv, s3.Config{Bucket: bucket, Prefix: fmt.Sprintf("storage-api/run-%d/", n.Add(1))})
		}, storagetest.Options{ConditionsRefused: true})
	})
	t.Run("NoPrefix", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return open(t, srv, s3.Config{Bucket: srv.NewBucket(t)})
		}, storagetest.Options{ConditionsRefused: true})
	})
	// Conditions enforced through the service's conditional writes. The compare-and-swap
	// works against versitygw, but versitygw v1.8.0 evaluates If-Match before it
	// receives the body (backend/posix PutObject), so two writers can both pass: not an
	// atomic service, which is why ConditionalWrites is off by default.
	t.Run("ConditionalWrites", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return open(t, srv, s3.Config{Bucket: srv.NewBucket(t), ConditionalWrites: true})
		}, storagetest.Options{NonAtomicConditions: "versitygw v1.8.0 checks If-Match before writing, not atomically with it"})
	})
}

// TestEnvironmentEndpoint checks that with no Endpoint in Config the SDK's own
// AWS_ENDPOINT_URL is used (how compose and Helm may configure it).
func TestEnvironmentEndpoint(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	bucket := srv.NewBucket(t)
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	s, err := s3.Open(t.Context(), s3.Config{Bucket: bucket, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// TestSharedBucket: two stores (as two API replicas) on one bucket see each other's
// writes, and of concurrent first writes through both, exactly one reports created.
func TestSharedBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	cfg := s3.Config{Bucket: srv.NewBucket(t), Prefix: "shared/"}
	a, b := open(t, srv, cfg), open(t, srv, cfg)

	mustPut(t, a, "x", "text/plain", "from a", true)
	mustRead(t, b, "x", "text/plain", "from a")
	mustPut(t, b, "x", "application/json", `"from b"`, false)
	mustRead(t, a, "x", "application/json", `"from b"`)
	if err := b.Delete(t.Context(), "x", storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Stat(t.Context(), "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat through a after Delete through b: %v, want ErrNotFound", err)
	}

	for round := range 5 {
		id := fmt.Sprint("race-", round)
		var created atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			s := []*s3.Store{a, b}[i%2]
			wg.Go(func() {
				res, err := s.Put(context.Background(), id, "text/plain", []byte(fmt.Sprint(i)), storage.Condition{})
				if err != nil {
					t.Error(err)
				}
				if res.Created {
					created.Add(1)
				}
			})
		}
		wg.Wait()
		if n := created.Load(); n != 1 {
			t.Errorf("round %d: %d of 8 concurrent first PUTs through two stores reported created, want 1", round, n)
		}
	}
}

// TestForeignObject: an object written by another S3 client (no sha256 metadata) is
// served with the service's ETag.
func TestForeignObject(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	bucket := srv.NewBucket(t)
	_, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{
		Bucket: &bucket, Key: aws.String("foreign"), Body: strings.NewReader("hello"), ContentType: aws.String("text/plain"),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, srv, s3.Config{Bucket: bucket})
	info, err := s.Stat(t.Context(), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag == "" || strings.Contains(info.ETag, `"`) || info.Size != 5 || info.ContentType != "text/plain" {
		t.Fatalf("Stat(foreign) = %+v", info)
	}
}

// TestServerDown: while the S3 server is down every operation fails with ErrUnavailable
// and Ready fails; when it is back on the same address the same store recovers.
func TestServerDown(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	s := open(t, srv, s3.Config{Bucket: srv.NewBucket(t)})
	mustPut(t, s, "kept", "text/plain", "before the outage", true)

	srv.Stop()
	checkUnavailable(t, s)

	srv.Restart()
	waitReady(t, s)
	mustRead(t, s, "kept", "text/plain", "before the outage")
	mustPut(t, s, "new", "text/plain", "after the outage", true)
}

// TestServerFrozen: a server that accepts connections but never answers (SIGSTOP) makes
// operations fail with ErrUnavailable within their timeouts instead of hanging, and a
// stalled streamed body fails instead of blocking its reader.
func TestServerFrozen(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	s := open(t, srv, s3.Config{
		Bucket:       srv.NewBucket(t),
		Timeout:      time.Second,
		ReadyTimeout: 500 * time.Millisecond,
		ReadTimeout:  time.Second,
		MaxAttempts:  2,
	})
	// Large enough that the body cannot sit whole in socket buffers when the server stops.
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	if _, err := s.Put(t.Context(), "big", "application/octet-stream", big, storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Get(t.Context(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	if _, err := io.ReadFull(obj.Body, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	if n, err := io.Copy(io.Discard, obj.Body); err == nil {
		t.Errorf("reading a body from a frozen server: got all %d bytes and no error, want an error", n)
	}
	checkUnavailable(t, s)

	srv.Thaw()
	thawed = true
	waitReady(t, s)
	mustPut(t, s, "after", "text/plain", "thawed", true)
}

func checkUnavailable(t *testing.T, s *s3.Store) {
	t.Helper()
	ops := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Ready", s.Ready},
		{"Put", func(ctx context.Context) error {
			_, err := s.Put(ctx, "x", "text/plain", []byte("x"), storage.Condition{})
			return err
		}},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "kept"); return err }},
		{"Stat", func(ctx context.Context) error { _, err := s.Stat(ctx, "kept"); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "kept", storage.Condition{}) }},
	}
	for _, op := range ops {
		if err := op.fn(t.Context()); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s with the server down: err = %v, want ErrUnavailable", op.name, err)
		}
	}
}

// waitReady polls Ready for a bounded time: after a restart the SDK reconnects on the
// next request, without reopening the store.
func waitReady(t *testing.T, s *s3.Store) {
	t.Helper()
	var err error
	for range 100 {
		if err = s.Ready(t.Context()); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("store not ready 10s after the server came back: %v", err)
}

func mustPut(t *testing.T, s storage.Store, id, contentType, data string, wantCreated bool) {
	t.Helper()
	res, err := s.Put(t.Context(), id, contentType, []byte(data), storage.Condition{})
	if err != nil {
		t.Fatalf("Put(%q): %v", id, err)
	}
	if res.Created != wantCreated {
		t.Fatalf("Put(%q) created = %v, want %v", id, res.Created, wantCreated)
	}
}

func mustRead(t *testing.T, s storage.Store, id, contentType, want string) {
	t.Helper()
	obj, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	defer obj.Body.Close()
	got, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	if string(got) != want || obj.ContentType != contentType || obj.ETag != storage.ETag([]byte(want)) {
		t.Fatalf("Get(%q) = %q %s %s, want %q %s", id, got, obj.ContentType, obj.ETag, want, contentType)
	}
}
