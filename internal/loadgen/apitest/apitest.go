// Package apitest is a small in-memory implementation of the storage API's
// object routes for loadgen's tests. It answers with the real API's status
// codes and counts every status it sent, so tests can compare loadgen's
// summary with what the server saw.
package apitest

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Server implements PUT/GET/HEAD/DELETE /api/buckets/{id} and GET /readyz.
type Server struct {
	// FailEvery makes every FailEvery-th object request answer 503 (0: never).
	FailEvery int
	// NotReady makes /readyz answer 503 for its first NotReady calls.
	NotReady int

	mu      sync.Mutex
	objects map[string][]byte
	counts  map[string]map[string]int64
	seen    int
	probes  int
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		s.mu.Lock()
		s.probes++
		ready := s.probes > s.NotReady
		s.mu.Unlock()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/api/buckets/")
	if !ok || id == "" || strings.Contains(id, "/") {
		http.NotFound(w, r)
		return
	}
	// Read the body before taking the lock: a PUT stores it.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil {
		s.objects = map[string][]byte{}
		s.counts = map[string]map[string]int64{}
	}
	s.seen++
	code := http.StatusMethodNotAllowed
	var out []byte
	switch {
	case s.FailEvery > 0 && s.seen%s.FailEvery == 0:
		code = http.StatusServiceUnavailable
	case r.Method == http.MethodPut:
		code = http.StatusNoContent
		if _, ok := s.objects[id]; !ok {
			code = http.StatusCreated
		}
		s.objects[id] = body
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		code = http.StatusNotFound
		if b, ok := s.objects[id]; ok {
			code, out = http.StatusOK, b
		}
	case r.Method == http.MethodDelete:
		code = http.StatusNotFound
		if _, ok := s.objects[id]; ok {
			delete(s.objects, id)
			code = http.StatusNoContent
		}
	}
	byStatus := s.counts[r.Method]
	if byStatus == nil {
		byStatus = map[string]int64{}
		s.counts[r.Method] = byStatus
	}
	byStatus[strconv.Itoa(code)]++
	if out != nil {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	}
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(out)
	}
}

// Counts returns a copy of the statuses sent, by method and status code.
func (s *Server) Counts() map[string]map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]map[string]int64, len(s.counts))
	for m, byStatus := range s.counts {
		c[m] = make(map[string]int64, len(byStatus))
		for k, v := range byStatus {
			c[m][k] = v
		}
	}
	return c
}
