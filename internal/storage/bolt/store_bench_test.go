package bolt_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

// BenchmarkGet reads one object whole, as a GET does: verification included.
func BenchmarkGet(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"10MiB", 10 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			s, err := bolt.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Put(context.Background(), "obj", "application/octet-stream", randBytes(1, size.n), storage.Condition{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					obj, err := s.Get(context.Background(), "obj")
					if err != nil {
						b.Error(err)
						return
					}
					_, err = io.Copy(io.Discard, obj.Body)
					obj.Body.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPut10MiB is one 10 MiB PUT at a time; -benchmem shows what a write allocates
// (in the store and in bbolt's commit) beyond the caller's buffer.
func BenchmarkPut10MiB(b *testing.B) {
	s, err := bolt.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := randBytes(1, 10<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		// A fresh slice per PUT: the store may keep the caller's.
		if _, err := s.Put(context.Background(), "obj", "application/octet-stream", bytes.Clone(data), storage.Condition{}); err != nil {
			b.Fatal(err)
		}
	}
}
