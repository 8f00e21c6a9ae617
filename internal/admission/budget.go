// Package admission protects the server's memory and file descriptors from its clients:
// a budget of body bytes held in memory at once, a limit on open connections that
// keeps a reserve for health probes, and a minimum transfer rate so that slow clients
// cannot hold either for long. docs/reliability.md explains the limits and the memory
// they add up to.
package admission

import "sync/atomic"

// Budget is a number of bytes that requests may hold in memory at once. It allocates
// nothing: callers reserve before they allocate and release when they are done.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// TryAcquire reserves n bytes if they fit, and reports whether they did. It never
// waits: a server that queued for memory would hold connections (and their buffers)
// while waiting, which is what the budget is there to prevent.
func (b *Budget) TryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Fits reports whether n bytes would fit now, without reserving them: the admission
// check on a request's announced length before any of its body is read.
func (b *Budget) Fits(n int64) bool { return b.used.Load()+n <= b.limit }

// Release returns n bytes reserved by TryAcquire.
func (b *Budget) Release(n int64) {
	if n > 0 {
		b.used.Add(-n)
	}
}

// InUse is the number of bytes reserved now.
func (b *Budget) InUse() int64 { return b.used.Load() }

// Limit is the budget's size.
func (b *Budget) Limit() int64 { return b.limit }
