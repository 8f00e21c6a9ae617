package bolt_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
	"github.com/sre-instrumentation/storage-api/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := bolt.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storagetest.Options{})
}

// TestReopen checks that what was written, and the totals, survive a close and reopen.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := s.Put(context.Background(), fmt.Sprint("id-", i), "text/plain", []byte(fmt.Sprint("value-", i)), storage.Condition{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := s.Delete(context.Background(), "id-0", storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i < 50; i++ {
		obj, err := s.Get(context.Background(), fmt.Sprint("id-", i))
		if err != nil {
			t.Fatalf("id-%d: %v", i, err)
		}
		b, _ := io.ReadAll(obj.Body)
		if string(b) != fmt.Sprint("value-", i) || obj.ContentType != "text/plain" {
			t.Fatalf("id-%d = %q (%s)", i, b, obj.ContentType)
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != 49 {
		t.Fatalf("Stats after reopen = %+v, want 49 objects", st)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	s, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := bolt.Open(dir); err == nil {
		s2.Close()
		t.Fatal("second Open of a locked database succeeded")
	}
}

func BenchmarkPutParallel(b *testing.B) {
	s, err := bolt.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1024)
	var n int64
	var mu sync.Mutex
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			id := fmt.Sprint("id-", n%1000)
			mu.Unlock()
			if _, err := s.Put(context.Background(), id, "application/octet-stream", data, storage.Condition{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
