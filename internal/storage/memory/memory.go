// Package memory is the original service's store: a map in memory, nothing survives a
// restart. For demos and tests.
package memory

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

type object struct {
	info storage.Info
	data []byte
}

// Store is an in-memory storage.Store.
type Store struct {
	mu      sync.RWMutex
	objects map[string]object
	bytes   int64
	closed  bool
}

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]object)}
}

var _ storage.StatsReporter = (*Store)(nil)

// Put stores data under id if cond holds (storage.Store).
func (s *Store) Put(_ context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	// No copy: Put owns data (see storage.Store), so the stored object is the caller's
	// buffer and a PUT of N bytes holds N bytes, once.
	obj := object{info: storage.NewInfo(contentType, data), data: data}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.PutResult{}, storage.ErrUnavailable
	}
	old, existed := s.objects[id]
	if err := cond.Check(existed, old.info.ETag); err != nil {
		return storage.PutResult{}, err
	}
	s.objects[id] = obj
	s.bytes += obj.info.Size - old.info.Size
	return storage.PutResult{Info: obj.info, Created: !existed}, nil
}

// Get returns the object under id (storage.Store).
func (s *Store) Get(_ context.Context, id string) (*storage.Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, storage.ErrUnavailable
	}
	obj, ok := s.objects[id]
	if !ok {
		return nil, storage.ErrNotFound
	}
	// Stored slices are never mutated (Put replaces them), so readers can share them.
	return &storage.Object{Info: obj.info, Body: io.NopCloser(bytes.NewReader(obj.data))}, nil
}

// Stat returns the metadata of the object under id (storage.Store).
func (s *Store) Stat(_ context.Context, id string) (storage.Info, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.Info{}, storage.ErrUnavailable
	}
	obj, ok := s.objects[id]
	if !ok {
		return storage.Info{}, storage.ErrNotFound
	}
	return obj.info, nil
}

// Delete removes the object under id if cond holds (storage.Store).
func (s *Store) Delete(_ context.Context, id string, cond storage.Condition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrUnavailable
	}
	obj, ok := s.objects[id]
	if !ok {
		return storage.ErrNotFound
	}
	if err := cond.Check(true, obj.info.ETag); err != nil {
		return err
	}
	delete(s.objects, id)
	s.bytes -= obj.info.Size
	return nil
}

// Ready reports whether the store can serve (storage.Store).
func (s *Store) Ready(context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.ErrUnavailable
	}
	return nil
}

// Stats reports the object count and bytes stored (storage.Store).
func (s *Store) Stats() (storage.Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return storage.Stats{Objects: int64(len(s.objects)), Bytes: s.bytes}, nil
}

// Close releases the store; it is idempotent (storage.Store).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.objects = nil
	return nil
}
