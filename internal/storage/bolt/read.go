package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// window is how much of an object a GET holds at once. An object up to this size is
// copied whole in the transaction that verifies it; a larger one is verified in place
// (over bbolt's memory map, no copy) and then copied out one window (four chunks) at a
// time, each in its own short read transaction, so neither memory nor a read
// transaction is held for the duration of a slow client's transfer. (A read transaction
// held across a network write would block bbolt from remapping the file when a writer
// grows it.)
const window = 4 * chunkSize

var windowPool = sync.Pool{New: func() any { b := make([]byte, window); return &b }}

// errChanged ends a GET whose object was replaced or deleted after its first window was
// sent: the rest of the new version would not match the headers and bytes already sent.
var errChanged = errors.New("object was replaced or deleted during the transfer")

var errClosed = errors.New("read after close")

// Get verifies the whole object against its checksum before anything is returned, so a
// damaged object is an error (storage.ErrCorrupt) before any header is sent.
func (s *Store) Get(_ context.Context, id string) (*storage.Object, error) {
	b := &body{s: s, id: id}
	err := s.view(func(tx *bolt.Tx) error {
		r, inline, err := lookup(tx, id)
		if err != nil {
			return err
		}
		if err := r.verify(tx, id, inline); err != nil {
			return err
		}
		b.rec = r
		if r.info.Size <= window {
			b.buf = make([]byte, 0, r.info.Size)
		} else {
			b.rec.stored = bytes.Clone(r.stored) // r.stored points into the map
			b.pooled = windowPool.Get().(*[]byte)
			b.buf = (*b.pooled)[:0]
		}
		return b.copyWindow(tx, inline)
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return &storage.Object{Info: b.rec.info, Body: b}, nil
}

// Stat verifies the record's own checksum (v2), not the data: HEAD stays cheap.
func (s *Store) Stat(_ context.Context, id string) (storage.Info, error) {
	var info storage.Info
	err := s.view(func(tx *bolt.Tx) error {
		r, _, err := lookup(tx, id)
		info = r.info
		return err
	})
	return info, err
}

// body streams an object one window at a time.
type body struct {
	s      *Store
	id     string
	rec    record // the version verified by Get
	buf    []byte // the current window
	pos    int    // read position in buf
	next   int64  // offset in the object of the byte after buf
	pooled *[]byte
	err    error
}

// copyWindow fills buf, from the object's offset next, up to its capacity.
func (b *body) copyWindow(tx *bolt.Tx, inline []byte) error {
	b.buf, b.pos = b.buf[:0], 0
	from, skip := 0, b.next
	if b.rec.inline {
		inline = inline[min(int64(len(inline)), skip):] // a v1 value larger than a window
		skip = 0
	} else {
		from, skip = int(b.next/int64(b.rec.chunkSize)), b.next%int64(b.rec.chunkSize)
	}
	err := b.rec.walk(tx, b.id, inline, from, func(p []byte) bool {
		p = p[skip:]
		skip = 0
		n := min(len(p), cap(b.buf)-len(b.buf))
		b.buf = append(b.buf, p[:n]...)
		return len(b.buf) < cap(b.buf)
	})
	b.next += int64(len(b.buf))
	return err
}

// fill copies the next window in its own read transaction, after checking that the
// object is still the version Get verified.
func (b *body) fill() error {
	if b.err != nil {
		return b.err
	}
	if b.next >= b.rec.info.Size {
		return io.EOF
	}
	b.err = b.s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(objectsBucket).Get([]byte(b.id))
		if v == nil || !b.rec.same(v) {
			return fmt.Errorf("id %q: %w", b.id, errChanged)
		}
		return b.copyWindow(tx, v[len(b.rec.stored):])
	})
	if b.err == nil && len(b.buf) == 0 {
		b.err = fmt.Errorf("id %q: no data at offset %d", b.id, b.next)
	}
	return b.err
}

func (b *body) Read(p []byte) (int, error) {
	if b.pos == len(b.buf) {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.pos:])
	b.pos += n
	return n, nil
}

// WriteTo lets io.Copy write whole windows, never inside a transaction.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if b.pos == len(b.buf) {
			if err := b.fill(); errors.Is(err, io.EOF) {
				return total, nil
			} else if err != nil {
				return total, err
			}
		}
		n, err := w.Write(b.buf[b.pos:])
		b.pos += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

func (b *body) Close() error {
	if b.pooled != nil {
		windowPool.Put(b.pooled)
		b.pooled = nil
	}
	b.buf, b.pos = nil, 0
	if b.err == nil {
		b.err = errClosed
	}
	return nil
}
