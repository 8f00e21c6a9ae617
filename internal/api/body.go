package api

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/admission"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
)

const (
	// probeSize is the first buffer of a body announced larger than it: the full
	// Content-Length is allocated only once this much has arrived, so announcing 10 MiB
	// and sending a byte costs the server 256 KiB, not 10 MiB.
	probeSize = 256 << 10
	// chunkedStart is the first buffer of a body of unknown length (chunked encoding).
	chunkedStart = 64 << 10
	// responseHold is what a response body is charged against the budget: the copy
	// buffer below plus the window a store reads ahead (bolt copies 256 KiB windows,
	// memory shares its slice, s3 streams), never the object's whole size.
	responseHold = copyChunk + 256<<10
	// copyChunk is the write size of large response bodies: the minimum rate is checked
	// between writes.
	copyChunk = 64 << 10
)

// Refusal reasons, the label values of storage_api_requests_refused_total.
const (
	refusedBudget      = metrics.RefusedInflightBytes
	refusedConnections = metrics.RefusedConnections
	refusedTooSlow     = metrics.RefusedTooSlow
)

// errBudget is returned by readBody when the body does not fit in the memory budget.
var errBudget = errors.New("server busy: request bodies in flight exceed the memory budget")

// bodies takes request bodies in and sends response bodies out within the server's
// limits: the memory budget, the minimum transfer rate and the read/write timeouts.
type bodies struct {
	budget       *admission.Budget // nil: no budget
	rate         admission.Rate
	readTimeout  time.Duration // the cap on reading a body, from the handler's start
	writeTimeout time.Duration
	admission    *metrics.Admission // nil: not counted
}

func (b *bodies) refused(reason string) {
	if b.admission != nil {
		b.admission.Refused(reason)
	}
}

// fits is the admission check of a body announced with n bytes, before any is read.
func (b *bodies) fits(n int64) bool { return b.budget == nil || n < 0 || b.budget.Fits(n) }

// reservation is bytes held against the budget by one request; release returns them.
type reservation struct {
	budget *admission.Budget
	n      int64
}

func (r *reservation) acquire(n int64) bool {
	if r.budget == nil {
		return true
	}
	if !r.budget.TryAcquire(n) {
		return false
	}
	r.n += n
	return true
}

func (r *reservation) release() {
	if r.budget != nil {
		r.budget.Release(r.n)
		r.n = 0
	}
}

// readBody reads r's whole body, at most maxSize bytes, into memory that follows what
// actually arrives and is charged against the budget before it is allocated. A body of
// known length N is read into one N-byte buffer (after a probeSize first buffer when N
// is larger), so a PUT of N bytes allocates N, not the 2-3 N of a growing buffer. The
// caller must release res once it no longer needs the bytes. Errors: errBudget,
// admission.ErrTooSlow, *http.MaxBytesError, or the client's read error.
func (b *bodies) readBody(w http.ResponseWriter, r *http.Request, maxSize int64, start time.Time, res *reservation) ([]byte, error) {
	rc := http.NewResponseController(w)
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxSize)
	if b.rate.Enabled() {
		body = admission.PacedReader(body, rc, b.rate, deadline(start, b.readTimeout))
		// The pacer moved the read deadline; net/http's background read after the body
		// must not inherit it (it would cancel the request while the store works).
		// Clearing a deadline on a connection that is gone fails, and there is nothing left to clear.
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	if n := r.ContentLength; n >= 0 {
		first := min(n, probeSize)
		if !res.acquire(first) {
			return nil, errBudget
		}
		// When n > probeSize the probe is a buffer of its own: the full one is only
		// allocated once the client has shown it is sending.
		buf := make([]byte, first)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, unexpectedEOF(err)
		}
		if first == n {
			return buf, nil
		}
		if !res.acquire(n - first) {
			return nil, errBudget
		}
		full := make([]byte, n)
		copy(full, buf)
		if _, err := io.ReadFull(body, full[first:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		return full, nil
	}
	// Unknown length: grow by doubling, each buffer charged before it is allocated.
	buf := []byte(nil)
	for size := int64(chunkedStart); ; size = min(2*size, maxSize+1) {
		if !res.acquire(size) {
			return nil, errBudget
		}
		next := make([]byte, len(buf), size)
		copy(next, buf)
		buf = next
		for len(buf) < cap(buf) {
			n, err := body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
}

// deadline is start+timeout, or no deadline when timeout is not set.
func deadline(start time.Time, timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return start.Add(timeout)
}

// unexpectedEOF reports a body that ended before its Content-Length as what it is.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// writeBody copies body to w. Small bodies go out in one write; large ones in
// copyChunk writes at the minimum rate, so a slow reader is cut instead of holding the
// store's window and this buffer until the write timeout.
func (b *bodies) writeBody(w http.ResponseWriter, body io.Reader, size int64, start time.Time) error {
	if size <= copyChunk || !b.rate.Enabled() {
		_, err := io.Copy(w, body)
		return err
	}
	rc := http.NewResponseController(w)
	limit := deadline(start, b.writeTimeout)
	out := admission.PacedWriter(w, rc, b.rate, limit)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	// io.CopyBuffer would hand the whole body to a WriterTo in one write; this loop
	// keeps every write a bounded chunk.
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			// Back to the server's own deadline for what net/http still flushes.
			_ = rc.SetWriteDeadline(limit)
			return nil
		}
		if err != nil {
			return err
		}
	}
}
