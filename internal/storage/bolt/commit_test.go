package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDamagedRecordFailsOnlyItself damages the headers of two records, then writes them
// together with 300 unrelated writes that share group commits: every write succeeds, the
// damaged ids are repaired by the PUT and removed by the DELETE, and the totals stay
// exact. (A damaged header used to fail every write of its transaction, and the id could
// never be overwritten or deleted.)
func TestDamagedRecordFailsOnlyItself(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	ctx := context.Background()
	for _, id := range []string{"bad-put", "bad-delete", "bad-version"} {
		if _, err := s.Put(ctx, id, "text/plain", bytes.Repeat([]byte(id), 100), storage.Condition{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		objs := tx.Bucket(objectsBucket)
		for id, i := range map[string]int{"bad-put": 4, "bad-delete": 10, "bad-version": 0} {
			v := bytes.Clone(objs.Get([]byte(id)))
			v[i] ^= 0x55
			if err := objs.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s = mustOpen(t, dir)
	defer s.Close()
	if _, err := s.Stat(ctx, "bad-put"); err == nil {
		t.Fatal("the damage was not detected")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 300 {
		wg.Go(func() {
			if _, err := s.Put(ctx, fmt.Sprint("other-", i), "a/b", []byte("x"), storage.Condition{}); err != nil {
				errs <- fmt.Errorf("unrelated PUT %d: %w", i, err)
			}
		})
		if i == 150 {
			wg.Go(func() {
				if res, err := s.Put(ctx, "bad-put", "text/new", []byte("repaired"), storage.Condition{}); err != nil || res.Created {
					errs <- fmt.Errorf("PUT over a damaged record = %+v, %v; want a replacement", res, err)
				}
			})
			wg.Go(func() {
				if err := s.Delete(ctx, "bad-delete", storage.Condition{}); err != nil {
					errs <- fmt.Errorf("DELETE of a damaged record: %w", err)
				}
			})
			wg.Go(func() {
				if _, err := s.Put(ctx, "bad-version", "text/new", nil, storage.Condition{}); err != nil {
					errs <- fmt.Errorf("PUT over a record with a damaged version byte: %w", err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	obj, err := s.Get(ctx, "bad-put")
	if err != nil {
		t.Fatalf("Get after the repair: %v", err)
	}
	obj.Body.Close()
	if _, err := s.Get(ctx, "bad-delete"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after the DELETE = %v, want ErrNotFound", err)
	}
	// 300 others + bad-put ("repaired") + bad-version (empty): exact, since the old
	// sizes came from the data values.
	if st, _ := s.Stats(); st.Objects != 302 || st.Bytes != 300+int64(len("repaired")) {
		t.Errorf("Stats = %+v, want 302 objects, %d bytes", st, 300+len("repaired"))
	}
}

// TestGroupCommitBoundedByBytes queues seven 10 MiB writes behind a held write
// transaction: they must not all go into one transaction (bbolt allocates page buffers
// for every value at commit), at most 32 MiB of values each. At most three fit in one,
// so there are at least three transactions however the writes arrive; without the bound
// the queued writes share one (two in all, with the first received while blocked).
func TestGroupCommitBoundedByBytes(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	txid := func() int {
		var id int
		s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	hold, err := s.db.Begin(true) // the committer blocks behind this
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 7 {
		wg.Go(func() {
			if _, err := s.Put(context.Background(), fmt.Sprint("big-", i), "a/b", make([]byte, 10<<20), storage.Condition{}); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // let them queue (if they have not, they only make more transactions)
	hold.Rollback()
	wg.Wait()
	if n := txid() - before; n < 3 {
		t.Errorf("seven queued 10 MiB PUTs were committed in %d transactions; want at least 3 (32 MiB of values each)", n)
	}
}

// TestInlineAndApart replaces a chunked object (over 32 KiB) with a smaller chunked one,
// one stored inline and back: no chunk is left behind, reads and totals follow.
func TestInlineAndApart(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	ctx := context.Background()
	large, medium, small := bytes.Repeat([]byte("L"), 3*chunkSize+5), bytes.Repeat([]byte("M"), chunkSize+1), bytes.Repeat([]byte("s"), inlineMax)
	chunkKeys := func() int {
		n := 0
		s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(chunksBucket).Stats().KeyN; return nil })
		return n
	}
	for i, step := range []struct {
		data   []byte
		del    bool
		chunks int
	}{{large, false, 4}, {medium, false, 2}, {small, false, 0}, {large, false, 4}, {nil, true, 0}, {small, false, 0}, {nil, true, 0}} {
		if step.del {
			if err := s.Delete(ctx, "x", storage.Condition{}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.Put(ctx, "x", "a/b", bytes.Clone(step.data), storage.Condition{}); err != nil {
			t.Fatal(err)
		}
		if n := chunkKeys(); n != step.chunks {
			t.Errorf("step %d: %d chunks stored, want %d", i, n, step.chunks)
		}
		st, _ := s.Stats()
		if want := (storage.Stats{Objects: 1, Bytes: int64(len(step.data))}); step.del {
			if st.Objects != 0 || st.Bytes != 0 {
				t.Errorf("step %d: Stats = %+v after delete", i, st)
			}
		} else if st.Objects != want.Objects || st.Bytes != want.Bytes {
			t.Errorf("step %d: Stats = %+v, want %+v", i, st, want)
		}
		if !step.del {
			obj, err := s.Get(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil || !bytes.Equal(b, step.data) {
				t.Fatalf("step %d: Get = %d bytes, %v", i, len(b), err)
			}
		}
	}
	s.Close()
	var out bytes.Buffer
	if _, err := Check(filepath.Join(dir, FileName), &out); err != nil {
		t.Fatalf("Check: %v\n%s", err, &out)
	}
}

// TestPutAllocatesAboutItsOwnSize overwrites a 10 MiB object between 10 MiB neighbours:
// the commit must allocate about the object's own bytes (bbolt's page buffer for them),
// not the neighbours' too. Stored as one value each, up to four adjacent 10 MiB values
// share a bbolt leaf (it never splits a leaf of four keys or fewer) and the commit
// rewrites all of them: 40 MiB.
func TestPutAllocatesAboutItsOwnSize(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	for i := range 8 {
		if _, err := s.Put(ctx, fmt.Sprint("obj-", i), "a/b", bytes.Repeat([]byte{byte(i)}, 10<<20), storage.Condition{}); err != nil {
			t.Fatal(err)
		}
	}
	data := bytes.Repeat([]byte{'x'}, 10<<20)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := s.Put(ctx, "obj-3", "a/b", data, storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("a 10 MiB PUT between 10 MiB neighbours allocated %.1f MiB", float64(got)/(1<<20))
	if got > 16<<20 {
		t.Errorf("a 10 MiB PUT between 10 MiB neighbours allocated %.1f MiB; want about 10 (its own page buffers)", float64(got)/(1<<20))
	}
}
