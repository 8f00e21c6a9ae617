package admission

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	steps := []struct {
		op   string
		n    int64
		ok   bool
		used int64
	}{
		{"acquire", 60, true, 60},
		{"fits", 40, true, 60},
		{"fits", 41, false, 60},
		{"acquire", 41, false, 60},
		{"acquire", 40, true, 100},
		{"acquire", 1, false, 100},
		{"acquire", 0, true, 100},
		{"release", 60, true, 40},
		{"acquire", 60, true, 100},
	}
	for i, s := range steps {
		var ok = true
		switch s.op {
		case "acquire":
			ok = b.TryAcquire(s.n)
		case "fits":
			ok = b.Fits(s.n)
		case "release":
			b.Release(s.n)
		}
		if ok != s.ok || b.InUse() != s.used {
			t.Fatalf("step %d %s(%d): ok=%v used=%d, want ok=%v used=%d", i, s.op, s.n, ok, b.InUse(), s.ok, s.used)
		}
	}
}

// TestBudgetConcurrent: however many goroutines race, the budget is never exceeded and
// returns to zero.
func TestBudgetConcurrent(t *testing.T) {
	b := NewBudget(1000)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10000 {
				if b.TryAcquire(300) {
					if u := b.InUse(); u > 1000 {
						t.Errorf("in use %d > limit", u)
					}
					b.Release(300)
				}
			}
		})
	}
	wg.Wait()
	if b.InUse() != 0 {
		t.Fatalf("in use %d after all released", b.InUse())
	}
}

// pipeConn is a net.Conn that is not a real socket, for the limiter's bookkeeping.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func TestConnLimiter(t *testing.T) {
	l := NewConnLimiter(2, 1)
	l.newGrace = time.Hour // only StateIdle connections are evictable in this test
	c1, c2 := l.admit(pipeConn(t)), l.admit(pipeConn(t))
	if c1 == nil || c2 == nil || c1.overflow || c2.overflow {
		t.Fatal("the first two connections must be admitted normally")
	}
	l.ConnState(c1, http.StateActive)
	l.ConnState(c2, http.StateActive)
	c3 := l.admit(pipeConn(t))
	if c3 == nil || !c3.overflow {
		t.Fatal("the third connection must be admitted on the reserve")
	}
	l.ConnState(c3, http.StateActive)
	if c4 := l.admit(pipeConn(t)); c4 != nil {
		t.Fatal("a fourth connection must be refused: limit and reserve are busy")
	}
	if l.Rejected() != 1 || l.Open() != 3 {
		t.Fatalf("rejected %d open %d, want 1 and 3", l.Rejected(), l.Open())
	}
	// c2 goes idle between requests: the next connection takes its place.
	l.ConnState(c2, http.StateIdle)
	c5 := l.admit(pipeConn(t))
	if c5 == nil || c5.overflow {
		t.Fatal("a new connection must replace the idle one")
	}
	if l.Evicted() != 1 || l.Open() != 3 {
		t.Fatalf("evicted %d open %d, want 1 and 3", l.Evicted(), l.Open())
	}
	if _, err := c2.Conn.Write([]byte("x")); err == nil {
		t.Fatal("the evicted connection is still open")
	}
	// Its StateClosed, when the server notices, must not release a second place.
	l.ConnState(c2, http.StateClosed)
	l.ConnState(c1, http.StateClosed)
	if l.Open() != 2 {
		t.Fatalf("open %d after one close, want 2", l.Open())
	}
	c5.Close()
	c3.Close()
	if l.Open() != 0 {
		t.Fatalf("open %d after all closed, want 0", l.Open())
	}
}

// TestConnLimiterSilentBurst: when the limit and reserve are full of connections that
// sent nothing, the oldest gives way, however new, so a probe is never locked out.
func TestConnLimiterSilentBurst(t *testing.T) {
	l := NewConnLimiter(2, 1)
	var first *Conn
	for i := range 3 {
		c := l.admit(pipeConn(t))
		if i == 0 {
			first = c
		}
	}
	probe := l.admit(pipeConn(t))
	if probe == nil || !probe.overflow {
		t.Fatal("the probe's connection must be admitted on the reserve")
	}
	if !first.released.Load() || l.Evicted() != 1 {
		t.Fatal("the oldest silent connection must have been evicted")
	}
}

// TestPacedReader runs a real server: a client that stalls mid-body gets ErrTooSlow
// after the grace period, one that trickles below the rate too, a fast one never.
func TestPacedReader(t *testing.T) {
	rate := Rate{Min: 1000, Grace: 300 * time.Millisecond}
	results := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, PacedReader(r.Body, http.NewResponseController(w), rate, time.Time{}))
		results <- err
	}))
	defer srv.Close()

	cases := []struct {
		name  string
		send  func(w io.Writer)
		wantE error
	}{
		{"fast", func(w io.Writer) { io.WriteString(w, strings.Repeat("x", 5000)) }, nil},
		{"stall", func(w io.Writer) { io.WriteString(w, "xx"); time.Sleep(2 * time.Second) }, ErrTooSlow},
		{"trickle", func(w io.Writer) {
			for range 20 {
				io.WriteString(w, "x") // 10 bytes/s, well under 1000
				time.Sleep(100 * time.Millisecond)
			}
		}, ErrTooSlow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
			go tc.send(c)
			select {
			case err := <-results:
				if !errors.Is(err, tc.wantE) {
					t.Fatalf("got %v, want %v", err, tc.wantE)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no result within 10s")
			}
		})
	}
}

func TestRateEnabled(t *testing.T) {
	for _, tc := range []struct {
		r    Rate
		want bool
	}{{Rate{}, false}, {Rate{Min: 1}, false}, {Rate{Grace: time.Second}, false}, {Rate{Min: 1, Grace: time.Second}, true}} {
		if got := tc.r.Enabled(); got != tc.want {
			t.Errorf("%+v.Enabled() = %v", tc.r, got)
		}
	}
}

func TestMaxConnections(t *testing.T) {
	got, err := MaxConnections(0)
	if err != nil || got < 1 || got > defaultMaxConnections {
		t.Fatalf("MaxConnections(0) = %d, %v", got, err)
	}
	if _, err := MaxConnections(1 << 30); err == nil {
		t.Fatal("a limit over the descriptor limit must be refused")
	}
	if got, err := MaxConnections(10); err != nil || got != 10 {
		t.Fatalf("MaxConnections(10) = %d, %v", got, err)
	}
}
