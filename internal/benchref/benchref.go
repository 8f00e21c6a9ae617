// Package benchref is the performance reference: the plainest net/http server of the
// object routes, a map behind a lock, with no validation, ETags, logging or metrics.
// It is what "a bare net/http handler serving a map" means in docs/performance.md: the
// benchmarks and cmd/bench-bare measure the Storage API against it. Not for serving.
package benchref

import (
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Path is the route template both servers share.
const Path = "/api/buckets/{id}"

// Store is a map of objects behind a read-write lock.
type Store struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

// New returns an empty store.
func New() *Store { return &Store{objects: map[string][]byte{}} }

// Set stores data under id (for preloading benchmarks).
func (s *Store) Set(id string, data []byte) {
	s.mu.Lock()
	s.objects[id] = data
	s.mu.Unlock()
}

// Get answers GET: 200 with the bytes, or 404.
func (s *Store) Get(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	data, ok := s.objects[r.PathValue("id")]
	s.mu.RUnlock()
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

// Put answers PUT: stores the body, 201 if new, 204 if replaced.
func (s *Store) Put(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	_, existed := s.objects[r.PathValue("id")]
	s.objects[r.PathValue("id")] = data
	s.mu.Unlock()
	if existed {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// Handler returns a ServeMux with GET and PUT on Path. wrap, when not nil, wraps each
// route's handler (given its method and path template): that is where the benchmarks
// put the instrumentation under comparison.
func (s *Store) Handler(wrap func(method, path string, h http.Handler) http.Handler) http.Handler {
	mux := http.NewServeMux()
	for method, h := range map[string]http.HandlerFunc{"GET": s.Get, "PUT": s.Put} {
		var hh http.Handler = h
		if wrap != nil {
			hh = wrap(method, Path, hh)
		}
		mux.Handle(method+" "+Path, hh)
	}
	return mux
}
