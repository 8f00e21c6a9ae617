// Package storagetest is the conformance suite every storage.Store backend must pass.
// A backend's test calls Run with a constructor that returns a fresh, empty store.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// Options tune the suite to a backend's limits.
type Options struct {
	// LargeSize is the size of the large-object test (default 10 MiB, the API's default limit).
	LargeSize int
	// Concurrency is the number of writers and readers in the concurrency test (default 8).
	Concurrency int
	// Rounds is the number of operations each of them performs (default 50).
	Rounds int
	// ConditionsRefused: the backend refuses every write with a non-zero Condition with
	// storage.ErrConditionUnsupported (it cannot enforce them atomically). The
	// precondition tests then check that such a write changes nothing.
	ConditionsRefused bool
	// NonAtomicConditions, when set, says why the server under test evaluates
	// conditions before the write rather than with it; the atomicity test is skipped.
	NonAtomicConditions string
}

// Run runs the suite. newStore must return a fresh empty store; Run closes it.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store, opts Options) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 10 << 20
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	if opts.Rounds == 0 {
		opts.Rounds = 50
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store, opts Options)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"Missing", testMissing},
		{"EmptyBody", testEmpty},
		{"LargeBody", testLarge},
		{"IDsKeptByteForByte", testIDs},
		{"Preconditions", testPreconditions},
		{"PreconditionsAtomic", testPreconditionsAtomic},
		{"Stats", testStats},
		{"ConcurrentSameID", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s, opts)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

// mustGet reads id and checks its content, content type and ETag.
func mustGet(t *testing.T, s storage.Store, id, contentType string, want []byte) {
	t.Helper()
	obj, err := s.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatalf("Get(%q): read body: %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %.32q, want %d bytes %.32q", id, len(got), got, len(want), want)
	}
	if obj.ContentType != contentType {
		t.Errorf("Get(%q).ContentType = %q, want %q", id, obj.ContentType, contentType)
	}
	if obj.ETag != storage.ETag(want) {
		t.Errorf("Get(%q).ETag = %q, want %q", id, obj.ETag, storage.ETag(want))
	}
	if obj.Size != int64(len(want)) {
		t.Errorf("Get(%q).Size = %d, want %d", id, obj.Size, len(want))
	}
	info, err := s.Stat(ctx(t), id)
	if err != nil {
		t.Fatalf("Stat(%q): %v", id, err)
	}
	if info != obj.Info {
		t.Errorf("Stat(%q) = %+v, Get gave %+v", id, info, obj.Info)
	}
}

func mustPut(t *testing.T, s storage.Store, id, contentType string, data []byte, wantCreated bool) {
	t.Helper()
	res, err := s.Put(ctx(t), id, contentType, data, storage.Condition{})
	if err != nil {
		t.Fatalf("Put(%q): %v", id, err)
	}
	if res.Created != wantCreated {
		t.Fatalf("Put(%q) created = %v, want %v", id, res.Created, wantCreated)
	}
	if want := storage.NewInfo(contentType, data); res.Info != want {
		t.Fatalf("Put(%q) info = %+v, want %+v", id, res.Info, want)
	}
}

func testRoundTrip(t *testing.T, s storage.Store, _ Options) {
	mustPut(t, s, "a", "application/json", []byte(`{"data":"some json"}`), true)
	mustGet(t, s, "a", "application/json", []byte(`{"data":"some json"}`))
	if err := s.Ready(ctx(t)); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func testOverwrite(t *testing.T, s storage.Store, _ Options) {
	mustPut(t, s, "a", "text/plain", []byte("first version, longer"), true)
	mustPut(t, s, "a", "application/octet-stream", []byte("second"), false)
	mustGet(t, s, "a", "application/octet-stream", []byte("second"))
}

func testDelete(t *testing.T, s storage.Store, _ Options) {
	mustPut(t, s, "a", "text/plain", []byte("x"), true)
	mustPut(t, s, "b", "text/plain", []byte("y"), true)
	if err := s.Delete(ctx(t), "a", storage.Condition{}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx(t), "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx(t), "a", storage.Condition{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
	}
	mustGet(t, s, "b", "text/plain", []byte("y"))
	// A deleted id is new again.
	mustPut(t, s, "a", "text/plain", []byte("z"), true)
}

func testMissing(t *testing.T, s storage.Store, _ Options) {
	if _, err := s.Get(ctx(t), "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx(t), "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx(t), "missing", storage.Condition{}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Delete: err = %v, want ErrNotFound", err)
	}
}

func testEmpty(t *testing.T, s storage.Store, _ Options) {
	mustPut(t, s, "empty", "application/octet-stream", nil, true)
	mustGet(t, s, "empty", "application/octet-stream", []byte{})
}

func testLarge(t *testing.T, s storage.Store, opts Options) {
	data := make([]byte, opts.LargeSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	mustPut(t, s, "large", "application/octet-stream", data, true)
	mustGet(t, s, "large", "application/octet-stream", data)
}

func testIDs(t *testing.T, s storage.Store, _ Options) {
	ids := []string{
		"with space", "slash/inside", "../dots", "ünïcødé-日本", "percent%2F", "a?b#c",
		strings.Repeat("x", 1024), "UPPER", "upper",
	}
	for i, id := range ids {
		mustPut(t, s, id, "text/plain", []byte(fmt.Sprint(i)), true)
	}
	for i, id := range ids {
		mustGet(t, s, id, "text/plain", []byte(fmt.Sprint(i)))
	}
}

func testStats(t *testing.T, s storage.Store, _ Options) {
	sr, ok := s.(storage.StatsReporter)
	if !ok {
		t.Skip("backend does not report stats")
	}
	want := func(objects, size int64) {
		t.Helper()
		st, err := sr.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st != (storage.Stats{Objects: objects, Bytes: size}) {
			t.Fatalf("Stats = %+v, want {Objects:%d Bytes:%d}", st, objects, size)
		}
	}
	want(0, 0)
	mustPut(t, s, "a", "", []byte("12345"), true)
	mustPut(t, s, "b", "", []byte("123"), true)
	want(2, 8)
	mustPut(t, s, "a", "", []byte("1"), false)
	want(2, 4)
	if err := s.Delete(ctx(t), "b", storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	_ = s.Delete(ctx(t), "b", storage.Condition{}) // not found: must not change the totals
	want(1, 1)
}

// testConcurrent runs writers and readers on one id. Every read must see one whole
// version (its bytes match its ETag and its content type matches the bytes), and
// exactly one of the first writes to the id reports created.
func testConcurrent(t *testing.T, s storage.Store, opts Options) {
	const id = "contended"
	var wg sync.WaitGroup
	errs := make(chan error, 2*opts.Concurrency*opts.Rounds)
	for w := range opts.Concurrency {
		wg.Go(func() {
			for i := range opts.Rounds {
				body := []byte(strings.Repeat(fmt.Sprintf("w%d-%d;", w, i), 1+i%7))
				if _, err := s.Put(context.Background(), id, "text/w"+fmt.Sprint(w), body, storage.Condition{}); err != nil {
					errs <- fmt.Errorf("put: %w", err)
				}
			}
		})
		wg.Go(func() {
			for range opts.Rounds {
				obj, err := s.Get(context.Background(), id)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("get: %w", err)
					continue
				}
				data, err := io.ReadAll(obj.Body)
				obj.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("read: %w", err)
					continue
				}
				if storage.ETag(data) != obj.ETag || int64(len(data)) != obj.Size {
					errs <- fmt.Errorf("torn read: etag/size do not match %d bytes", len(data))
				}
				if w := "text/" + strings.SplitN(string(data), "-", 2)[0]; w != obj.ContentType {
					errs <- fmt.Errorf("torn read: content type %q with body %.16q", obj.ContentType, data)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if err := s.Delete(context.Background(), id, storage.Condition{}); err != nil {
		t.Fatalf("final Delete: %v", err)
	}

	// Concurrent creates of a new id: exactly one is "created".
	var created sync.WaitGroup
	results := make(chan bool, opts.Concurrency)
	for range opts.Concurrency {
		created.Go(func() {
			res, err := s.Put(context.Background(), "fresh", "text/plain", []byte("x"), storage.Condition{})
			if err != nil {
				t.Errorf("Put: %v", err)
			}
			results <- res.Created
		})
	}
	created.Wait()
	close(results)
	n := 0
	for c := range results {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent creates of one id reported created, want exactly 1", n)
	}
}

func testClosed(t *testing.T, s storage.Store, _ Options) {
	mustPut(t, s, "a", "text/plain", []byte("x"), true)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ready(ctx(t)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Ready after Close: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Put(ctx(t), "b", "text/plain", []byte("x"), storage.Condition{}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Put after Close: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx(t), "a"); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Get after Close: err = %v, want ErrUnavailable", err)
	}
	// Close is idempotent: cmd/storage-api defers a Close that runs after the explicit one
	// on the graceful path, and that second call must neither fail nor panic.
	for i := 2; i <= 3; i++ {
		if err := s.Close(); err != nil {
			t.Errorf("Close call %d after the first: %v, want nil (Close is idempotent)", i, err)
		}
	}
	if err := s.Ready(ctx(t)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Ready after a second Close: err = %v, want ErrUnavailable", err)
	}
}

// testPreconditions checks each form of Condition against an existing and a missing
// object: a failed condition returns ErrPreconditionFailed and changes nothing.
func testPreconditions(t *testing.T, s storage.Store, opts Options) {
	v1 := []byte("version 1")
	e1 := storage.ETag(v1)
	other := storage.ETag([]byte("something else"))
	star := []string{"*"}
	tests := []struct {
		name    string
		exists  bool // "a" holds v1 before the write
		del     bool // Delete instead of Put
		cond    storage.Condition
		wantErr error // nil: the write happens
	}{
		{"PutIfMatchCurrent", true, false, storage.Condition{IfMatch: []string{e1}}, nil},
		{"PutIfMatchInList", true, false, storage.Condition{IfMatch: []string{other, e1}}, nil},
		{"PutIfMatchOther", true, false, storage.Condition{IfMatch: []string{other}}, storage.ErrPreconditionFailed},
		{"PutIfMatchEmptyList", true, false, storage.Condition{IfMatch: []string{}}, storage.ErrPreconditionFailed},
		{"PutIfMatchStarExisting", true, false, storage.Condition{IfMatch: star}, nil},
		{"PutIfMatchStarMissing", false, false, storage.Condition{IfMatch: star}, storage.ErrPreconditionFailed},
		{"PutIfMatchTagMissing", false, false, storage.Condition{IfMatch: []string{e1}}, storage.ErrPreconditionFailed},
		{"PutIfNoneMatchStarExisting", true, false, storage.Condition{IfNoneMatch: star}, storage.ErrPreconditionFailed},
		{"PutIfNoneMatchStarMissing", false, false, storage.Condition{IfNoneMatch: star}, nil},
		{"PutIfNoneMatchCurrent", true, false, storage.Condition{IfNoneMatch: []string{other, e1}}, storage.ErrPreconditionFailed},
		{"PutIfNoneMatchOther", true, false, storage.Condition{IfNoneMatch: []string{other}}, nil},
		{"PutIfNoneMatchTagMissing", false, false, storage.Condition{IfNoneMatch: []string{e1}}, nil},
		{"PutBothHold", true, false, storage.Condition{IfMatch: []string{e1}, IfNoneMatch: []string{other}}, nil},
		{"PutIfMatchHoldsIfNoneMatchFails", true, false, storage.Condition{IfMatch: star, IfNoneMatch: []string{e1}}, storage.ErrPreconditionFailed},
		{"DeleteIfMatchCurrent", true, true, storage.Condition{IfMatch: []string{e1}}, nil},
		{"DeleteIfMatchStar", true, true, storage.Condition{IfMatch: star}, nil},
		{"DeleteIfMatchOther", true, true, storage.Condition{IfMatch: []string{other}}, storage.ErrPreconditionFailed},
		{"DeleteIfMatchMissing", false, true, storage.Condition{IfMatch: []string{e1}}, storage.ErrNotFound},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprint("cond-", i)
			if tc.exists {
				mustPut(t, s, id, "text/plain", v1, true)
			}
			v2 := []byte("version 2")
			var err error
			var res storage.PutResult
			if tc.del {
				err = s.Delete(ctx(t), id, tc.cond)
			} else {
				res, err = s.Put(ctx(t), id, "application/json", v2, tc.cond)
			}
			wantErr := tc.wantErr
			if opts.ConditionsRefused {
				wantErr = storage.ErrConditionUnsupported
			}
			if !errors.Is(err, wantErr) || (err != nil && wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, wantErr)
			}
			switch {
			case err != nil && tc.exists:
				mustGet(t, s, id, "text/plain", v1) // unchanged
			case err != nil:
				if _, err := s.Stat(ctx(t), id); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("failed write left an object: Stat err = %v", err)
				}
			case tc.del:
				if _, err := s.Stat(ctx(t), id); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("after Delete: Stat err = %v, want ErrNotFound", err)
				}
			default:
				if res.Created == tc.exists {
					t.Errorf("created = %v with the object existing = %v", res.Created, tc.exists)
				}
				mustGet(t, s, id, "application/json", v2)
			}
		})
	}
	if sr, ok := s.(storage.StatsReporter); ok {
		// Failed conditions must not have moved the totals.
		var objects, size int64
		for i := range tests {
			info, err := s.Stat(ctx(t), fmt.Sprint("cond-", i))
			if err == nil {
				objects, size = objects+1, size+info.Size
			}
		}
		st, err := sr.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st != (storage.Stats{Objects: objects, Bytes: size}) {
			t.Errorf("Stats = %+v, want {Objects:%d Bytes:%d}", st, objects, size)
		}
	}
}

// testPreconditionsAtomic proves conditions are evaluated with the write, not before
// it: writers increment a counter by compare-and-swap (read, then Put with If-Match on
// what they read, retried on ErrPreconditionFailed); a check-then-write store loses
// increments. And of concurrent creates with If-None-Match: *, exactly one succeeds.
func testPreconditionsAtomic(t *testing.T, s storage.Store, opts Options) {
	if opts.ConditionsRefused {
		t.Skip("the backend refuses conditions (checked by Preconditions)")
	}
	if opts.NonAtomicConditions != "" {
		t.Skip(opts.NonAtomicConditions)
	}
	const id = "counter"
	mustPut(t, s, id, "text/plain", []byte("0"), true)
	rounds := max(opts.Rounds/5, 4)
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(func() {
			for range rounds {
				for attempt := 0; ; attempt++ {
					if attempt == 1000 {
						t.Error("1000 compare-and-swap attempts failed in a row")
						return
					}
					obj, err := s.Get(context.Background(), id)
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					data, err := io.ReadAll(obj.Body)
					obj.Body.Close()
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					var n int
					fmt.Sscan(string(data), &n)
					next := []byte(fmt.Sprint(n + 1))
					_, err = s.Put(context.Background(), id, "text/plain", next, storage.Condition{IfMatch: []string{obj.ETag}})
					if errors.Is(err, storage.ErrPreconditionFailed) {
						continue
					}
					if err != nil {
						t.Errorf("Put: %v", err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	mustGet(t, s, id, "text/plain", []byte(fmt.Sprint(opts.Concurrency*rounds)))

	var created sync.WaitGroup
	results := make(chan error, opts.Concurrency)
	for i := range opts.Concurrency {
		created.Go(func() {
			_, err := s.Put(context.Background(), "create-once", "text/plain", []byte(fmt.Sprint(i)),
				storage.Condition{IfNoneMatch: []string{"*"}})
			results <- err
		})
	}
	created.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrPreconditionFailed):
			t.Errorf("Put If-None-Match *: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent Puts with If-None-Match: * succeeded, want exactly 1", ok, opts.Concurrency)
	}
}
