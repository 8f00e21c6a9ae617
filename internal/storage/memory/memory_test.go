package memory_test

import (
	"runtime"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
	"github.com/sre-instrumentation/storage-api/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Store { return memory.New() }, storagetest.Options{})
}

// TestPutDoesNotCopy: Put owns its data (storage.Store), so storing N bytes allocates
// nothing near N more: the API's body buffer is the stored object.
func TestPutDoesNotCopy(t *testing.T) {
	s := memory.New()
	defer s.Close()
	data := make([]byte, 4<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := s.Put(t.Context(), "a", "application/octet-stream", data, storage.Condition{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(data))/4 {
		t.Errorf("Put of %d bytes allocated %d bytes: the data was copied", len(data), n)
	}
}
