package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

// body returns size pseudo-random bytes determined by seed: the test keeps the seed,
// not the bytes, of every PUT it sends.
func body(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size+8)
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:size]
}

type sentPut struct {
	seed     uint64
	size     int
	ct       string
	answered bool // the server answered 201: it promised the object is on disk
}

// TestDurabilityAfterSIGKILL kills the bolt server with SIGKILL while 16 clients PUT
// distinct objects, restarts it on the same directory, and reads everything back.
// A PUT answered 2xx must read back byte for byte with its Content-Type; a PUT that got
// no answer may be missing, but if present it must be whole.
func TestDurabilityAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-listen-address", "127.0.0.1:0", "-storage", "bolt", "-data-dir", dir, "-access-log=false"}
	p := startProc(t, nil, args...)
	const clients = 16
	client := newClient(clients)

	var (
		mu         sync.Mutex
		puts       = map[string]*sentPut{}
		unexpected []string
		answered   atomic.Int64
		killed     atomic.Bool
		wg         sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			for n := 0; !killed.Load(); n++ {
				id := fmt.Sprintf("c%02d-%06d", c, n)
				s := &sentPut{seed: rng.Uint64(), size: 1<<10 + rng.IntN(63<<10+1), ct: fmt.Sprintf("application/x-test-%d", n%7)}
				mu.Lock()
				puts[id] = s
				mu.Unlock()
				status, _, _, err := do(client, http.MethodPut, p.url+"/api/buckets/"+id, body(s.seed, s.size),
					http.Header{"Content-Type": {s.ct}})
				switch {
				case err != nil:
					if !killed.Load() {
						mu.Lock()
						unexpected = append(unexpected, fmt.Sprintf("PUT %s before the kill: %v", id, err))
						mu.Unlock()
					}
					// After the kill: no answer; the loop ends.
				case status == http.StatusCreated:
					mu.Lock()
					s.answered = true
					mu.Unlock()
					answered.Add(1)
				default:
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("PUT %s: status %d", id, status))
					mu.Unlock()
				}
			}
		})
	}
	// Kill mid-stream: after about a second or 400 answered PUTs, whichever comes first,
	// but never before some PUT was answered (bounded by 30s on a very slow machine).
	start := time.Now()
	for {
		n := answered.Load()
		if n >= 400 || (n > 0 && time.Since(start) >= time.Second) || time.Since(start) > 30*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed.Store(true)
	p.kill()
	wg.Wait()
	client.CloseIdleConnections()

	for _, u := range unexpected {
		t.Error(u)
	}
	var nAnswered, nUnanswered int
	for _, s := range puts {
		if s.answered {
			nAnswered++
		} else {
			nUnanswered++
		}
	}
	t.Logf("killed after %v: %d PUTs answered, %d in flight or unanswered", time.Since(start).Round(time.Millisecond), nAnswered, nUnanswered)
	if nAnswered == 0 {
		t.Fatal("no PUT was answered before the kill: nothing was tested")
	}
	if nUnanswered == 0 {
		t.Fatal("no PUT was in flight at the kill: it was not mid-stream")
	}

	checkBolt(t, filepath.Join(dir, bolt.FileName))

	// Restart on the same directory and read everything back.
	p2 := startProc(t, nil, args...)
	var present atomic.Int64
	ids := make(chan string)
	var rg sync.WaitGroup
	for range 4 {
		rg.Go(func() {
			for id := range ids {
				s := puts[id]
				status, h, got, err := do(client, http.MethodGet, p2.url+"/api/buckets/"+id, nil, nil)
				switch {
				case err != nil:
					t.Errorf("GET %s after restart: %v", id, err)
				case status == http.StatusNotFound && !s.answered:
					// Never committed: allowed.
				case status != http.StatusOK:
					t.Errorf("GET %s after restart: status %d (answered before the kill: %v)", id, status, s.answered)
				default:
					present.Add(1)
					if want := body(s.seed, s.size); !bytes.Equal(got, want) {
						t.Errorf("GET %s after restart: %d bytes differ from the %d sent (answered before the kill: %v)",
							id, len(got), len(want), s.answered)
					}
					if ct := h.Get("Content-Type"); ct != s.ct {
						t.Errorf("GET %s after restart: Content-Type %q, want %q", id, ct, s.ct)
					}
				}
			}
		})
	}
	for id := range puts {
		ids <- id
	}
	close(ids)
	rg.Wait()
	if status, _, _, err := do(client, http.MethodGet, p2.url+"/api/buckets/never-sent", nil, nil); err != nil || status != http.StatusNotFound {
		t.Errorf("GET never-sent after restart: %d, %v; want 404", status, err)
	}
	t.Logf("after restart: %d of %d objects present (%d answered)", present.Load(), len(puts), nAnswered)
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// checkBolt runs bbolt's own consistency check on the database file: no torn page, no
// dangling reference, after whatever the test did to the process.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
