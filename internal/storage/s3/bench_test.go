package s3_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/s3"
	"github.com/sre-instrumentation/storage-api/internal/storage/s3/s3test"
)

// BenchmarkStore measures 1 KiB operations against a local versitygw, which does most of
// the work; profile with -cpuprofile to see the client's (SDK) share.
func BenchmarkStore(b *testing.B) {
	srv := s3test.Start(b)
	srv.SetEnv(b)
	s, err := s3.Open(b.Context(), s3.Config{Bucket: srv.NewBucket(b), Endpoint: srv.Endpoint, PathStyle: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1024)
	const ids = 100
	for i := range ids {
		if _, err := s.Put(b.Context(), fmt.Sprint("id-", i), "application/octet-stream", data, storage.Condition{}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if _, err := s.Put(b.Context(), fmt.Sprint("id-", i%ids), "application/octet-stream", data, storage.Condition{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				obj, err := s.Get(b.Context(), fmt.Sprint("id-", i%ids))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, obj.Body)
				obj.Body.Close()
			}
		})
	})
}
