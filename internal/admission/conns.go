package admission

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimiter bounds the open connections of an http.Server. Without a bound, a client
// that opens connections and sends nothing uses up the process's file descriptors, and
// then the accept loop stalls on EMFILE and even the health probes go unanswered.
//
// At the limit, a new connection first takes the place of an idle one (a keep-alive
// connection between requests, or one that has sent no request for a second), as nginx
// reuses keep-alive connections when it runs out. If every connection is busy, up to
// Reserve more are accepted as overflow connections: on those the server answers the
// operational routes (health, readiness, metrics), so probes and scrapes still see the
// server, and refuses the rest with 503 (see Overflow). Past that, connections are
// closed as soon as they are accepted, which keeps the accept loop, and the file
// descriptor count, moving.
type ConnLimiter struct {
	max, reserve int
	// newGrace is how long a connection may sit without a first request before it is
	// treated as idle when room is needed.
	newGrace time.Duration

	mu    sync.Mutex
	conns map[*Conn]struct{}

	open     atomic.Int64
	evicted  atomic.Int64
	rejected atomic.Int64
}

// NewConnLimiter allows limit connections, plus reserve overflow connections for the
// operational routes.
func NewConnLimiter(limit, reserve int) *ConnLimiter {
	return &ConnLimiter{max: limit, reserve: reserve, newGrace: time.Second, conns: make(map[*Conn]struct{})}
}

// Listener returns ln with Accept subject to the limit.
func (l *ConnLimiter) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

// ConnState must be installed as the server's http.Server.ConnState: it is how the
// limiter knows which connections are idle and when they close.
func (l *ConnLimiter) ConnState(c net.Conn, s http.ConnState) {
	tc, ok := c.(*Conn)
	if !ok {
		return
	}
	tc.state.Store(int32(s))
	tc.since.Store(time.Now().UnixNano())
	if s == http.StateClosed || s == http.StateHijacked {
		l.release(tc)
	}
}

// ConnContext must be installed as the server's http.Server.ConnContext: it marks the
// requests of overflow connections (see Overflow).
func (l *ConnLimiter) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*Conn); ok && tc.overflow {
		return context.WithValue(ctx, overflowKey{}, true)
	}
	return ctx
}

type overflowKey struct{}

// Overflow reports whether the request arrived on an overflow connection: one accepted
// over the limit, which should serve only operational routes and then close.
func Overflow(ctx context.Context) bool {
	v, _ := ctx.Value(overflowKey{}).(bool)
	return v
}

// Open is the number of connections open now, overflow ones included.
func (l *ConnLimiter) Open() int64 { return l.open.Load() }

// Max is the connection limit, without the reserve.
func (l *ConnLimiter) Max() int { return l.max }

// Evicted counts idle connections closed to make room for new ones.
func (l *ConnLimiter) Evicted() int64 { return l.evicted.Load() }

// Rejected counts connections closed at accept because even the reserve was in use.
func (l *ConnLimiter) Rejected() int64 { return l.rejected.Load() }

// admit registers c, making room by closing an idle connection if needed. It returns
// nil when c must be refused.
func (l *ConnLimiter) admit(c net.Conn) *Conn {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	tc := &Conn{Conn: c, l: l}
	tc.since.Store(now.UnixNano())
	if len(l.conns) >= l.max {
		switch victim := l.idlest(now, l.newGrace); {
		case victim != nil:
			l.evict(victim)
		case len(l.conns) < l.max+l.reserve:
			tc.overflow = true
		default:
			// Even the reserve is taken: the oldest connection still without a request,
			// however new, gives way (a burst of silent connections must not lock out the
			// probes); only when all are busy is the new one refused.
			victim := l.idlest(now, 0)
			if victim == nil {
				l.rejected.Add(1)
				return nil
			}
			l.evict(victim)
			tc.overflow = true
		}
	}
	l.conns[tc] = struct{}{}
	l.open.Store(int64(len(l.conns)))
	return tc
}

// idlest returns the connection that has been idle longest: keep-alive connections
// between requests first, then connections that have sent no request for newGrace.
// Called with mu held; it scans, but only when the limit is reached.
func (l *ConnLimiter) idlest(now time.Time, newGrace time.Duration) *Conn {
	var best *Conn
	var bestSince int64
	bestIdle := false
	for c := range l.conns {
		since := c.since.Load()
		switch http.ConnState(c.state.Load()) {
		case http.StateIdle:
			if !bestIdle || since < bestSince {
				best, bestSince, bestIdle = c, since, true
			}
		case http.StateNew:
			if !bestIdle && now.UnixNano()-since >= int64(newGrace) && (best == nil || since < bestSince) {
				best, bestSince = c, since
			}
		}
	}
	return best
}

// evict closes c to make room. Called with mu held.
func (l *ConnLimiter) evict(c *Conn) {
	l.drop(c)
	l.evicted.Add(1)
	// Closing makes the server's pending read fail; it then reports StateClosed, which
	// finds the connection already released.
	c.Conn.Close()
}

func (l *ConnLimiter) release(c *Conn) {
	l.mu.Lock()
	l.drop(c)
	l.mu.Unlock()
}

// drop forgets c, once. Called with mu held.
func (l *ConnLimiter) drop(c *Conn) {
	if c.released.CompareAndSwap(false, true) {
		delete(l.conns, c)
		l.open.Store(int64(len(l.conns)))
	}
}

// Conn is an accepted connection as the limiter tracks it.
type Conn struct {
	net.Conn
	l        *ConnLimiter
	overflow bool
	state    atomic.Int32 // http.ConnState
	since    atomic.Int64 // unix nanoseconds of the last state change
	released atomic.Bool
}

// NetConn returns the wrapped connection (as tls.Conn does), so that other
// connection wrappers' ConnContext can find theirs.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Close releases the connection's place and closes it.
func (c *Conn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// CloseWrite half-closes the connection when the underlying one can (net/http uses it
// to let the client read an error response before the connection goes).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type limitListener struct {
	net.Listener
	l *ConnLimiter
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := ln.l.admit(c); tc != nil {
			return tc, nil
		}
		c.Close()
	}
}
