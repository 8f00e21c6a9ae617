// Package bolt is the durable embedded store: one bbolt file on local disk. A PUT or
// DELETE returns only after its transaction is fsync'd.
//
// Writes go through one committer goroutine that group-commits: while a transaction is
// being fsync'd, new writes queue up, and the next transaction takes all of them. An idle
// store therefore answers a write after a single fsync, and a busy one shares each fsync
// among every writer that arrived meanwhile. (bbolt's own Batch does the same but waits
// for a timer before committing, which costs latency at low concurrency.)
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// FileName is the database file inside the data directory.
const FileName = "objects.db"

var (
	objectsBucket = []byte("objects")
	chunksBucket  = []byte("chunks")
	metaBucket    = []byte("meta")
	countKey      = []byte("objects")
	bytesKey      = []byte("bytes")
)

// A group commit takes at most maxBatch writes and maxBatchBytes of object data (a
// single larger object goes alone), so a flood of writers cannot make one transaction,
// and the page buffers bbolt allocates for every value at commit, arbitrarily large.
const (
	maxBatch      = 512
	maxBatchBytes = 32 << 20
)

type opKind int

const (
	opPut opKind = iota
	opDelete
)

type writeOp struct {
	kind        opKind
	id          string
	contentType string
	data        []byte
	sum         [32]byte
	cond        storage.Condition

	// Results, valid after done is closed.
	created bool
	err     error
	batch   int // writes that shared the commit (and its fsync)
	done    chan struct{}
}

// Store is a bbolt-backed storage.Store.
type Store struct {
	db     *bolt.DB
	writes chan *writeOp
	quit   chan struct{}
	exited chan struct{}
	once   sync.Once
}

var _ storage.StatsReporter = (*Store)(nil)

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// A second process on the same file fails fast instead of hanging on the flock.
		Timeout: 2 * time.Second,
		// Each commit fsyncs; not writing the free list into it makes each commit write
		// fewer pages. The list is rebuilt by a scan at open instead. Durability of the
		// data is unchanged.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{objectsBucket, chunksBucket, metaBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		writes: make(chan *writeOp),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

// Put stores data under id if cond holds (storage.Store).
func (s *Store) Put(ctx context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	info := storage.NewInfo(contentType, data)
	op := &writeOp{kind: opPut, id: id, contentType: contentType, data: data, cond: cond}
	_, _ = hex.Decode(op.sum[:], []byte(info.ETag)) // storage.ETag's hex: always decodes
	if err := s.submit(ctx, op); err != nil {
		return storage.PutResult{}, err
	}
	if op.err != nil {
		return storage.PutResult{}, op.err
	}
	return storage.PutResult{Info: info, Created: op.created}, nil
}

// Delete removes the object under id if cond holds (storage.Store).
func (s *Store) Delete(ctx context.Context, id string, cond storage.Condition) error {
	op := &writeOp{kind: opDelete, id: id, cond: cond}
	if err := s.submit(ctx, op); err != nil {
		return err
	}
	return op.err
}

// submit hands op to the committer and waits for its commit. Once handed over, the
// write is waited for even if ctx ends, so that a 2xx is never sent for a write that
// was not durable, nor a failure for one that was.
func (s *Store) submit(ctx context.Context, op *writeOp) error {
	op.done = make(chan struct{})
	select {
	case s.writes <- op:
	case <-s.quit:
		return storage.ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
	// A traced request shows the wait for the group commit (its fsync) as its own span.
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "bolt commit wait")
		<-op.done
		span.SetAttributes(attribute.Int("bolt.commit.batch_size", op.batch))
		span.End()
		return nil
	}
	<-op.done
	return nil
}

// tracerName is the instrumentation scope of the commit-wait span.
const tracerName = "github.com/sre-instrumentation/storage-api/internal/storage/bolt"

func (s *Store) commitLoop() {
	defer close(s.exited)
	batch := make([]*writeOp, 0, maxBatch)
	var next *writeOp // received, but did not fit in the previous batch
	for {
		if next != nil {
			batch, next = append(batch[:0], next), nil
		} else {
			select {
			case op := <-s.writes:
				batch = append(batch[:0], op)
			case <-s.quit:
				return
			}
		}
		// Take every writer already waiting; they share this transaction's fsync.
		size := len(batch[0].data)
	drain:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case op := <-s.writes:
				if size+len(op.data) > maxBatchBytes {
					next = op
					break drain
				}
				batch, size = append(batch, op), size+len(op.data)
			default:
				break drain
			}
		}
		s.commit(batch)
		for _, op := range batch {
			op.batch = len(batch)
			close(op.done)
		}
		clear(batch)
	}
}

// errPanic marks a commit that bbolt panicked in (a damaged page).
var errPanic = errors.New("bbolt panicked")

// commit applies batch in one transaction. A write's own failure (a bad argument, a
// precondition) fails only that write; a failure of the transaction fails them all, and
// nothing of any of them is stored.
func (s *Store) commit(batch []*writeOp) {
	err := s.update(func(tx *bolt.Tx) error {
		objects, chunks, meta := tx.Bucket(objectsBucket), tx.Bucket(chunksBucket), tx.Bucket(metaBucket)
		count, size := readInt(meta, countKey), readInt(meta, bytesKey)
		for _, op := range batch {
			op.created, op.err = false, nil
			key, prefix := []byte(op.id), chunkPrefix(op.id)
			old := objects.Get(key)
			exists := old != nil
			var oldSize int64
			// A damaged record (exists, but its ETag cannot be trusted) is replaced or
			// removed like any other: that is its repair. Only If-Match: * or no
			// condition can match it.
			var oldETag string
			if exists {
				if r, _, err := parseRecord(op.id, old); err == nil {
					oldSize, oldETag = r.info.Size, r.info.ETag
				} else {
					oldSize = damagedSize(old, chunks, prefix)
				}
			}
			// The condition is checked here, inside the transaction that writes: it sees
			// the effect of every earlier op of this batch, and fails only its own op.
			if exists || op.kind == opPut {
				if op.err = op.cond.Check(exists, oldETag); op.err != nil {
					continue
				}
			}
			switch op.kind {
			case opPut:
				v, inline, err := encodeV2(op.id, op.contentType, op.sum, op.data)
				if err != nil {
					op.err = err
					continue
				}
				n := 0
				if !inline {
					n = (len(op.data) + chunkSize - 1) / chunkSize
				}
				// The previous version's chunks beyond the new ones (all of them, for an
				// inline object); the others are overwritten.
				if err := deleteChunks(chunks, prefix, n); err != nil {
					return err
				}
				for i := range n {
					// bbolt keeps a reference to the chunk, a sub-slice of the caller's
					// buffer, until the commit: written without a copy of our own.
					if err := chunks.Put(chunkKey(prefix, i), op.data[i*chunkSize:min(len(op.data), (i+1)*chunkSize)]); err != nil {
						return err
					}
				}
				if err := objects.Put(key, v); err != nil {
					return err
				}
				if !exists {
					op.created = true
					count++
				}
				size += int64(len(op.data)) - oldSize
			case opDelete:
				// Also chunks left without their record (see Check): DELETE clears them.
				if err := deleteChunks(chunks, prefix, 0); err != nil {
					return err
				}
				if !exists {
					op.err = storage.ErrNotFound
					continue
				}
				if err := objects.Delete(key); err != nil {
					return err
				}
				count--
				size -= oldSize
			}
		}
		if err := writeInt(meta, countKey, count); err != nil {
			return err
		}
		return writeInt(meta, bytesKey, size)
	})
	if err == nil {
		return
	}
	if errors.Is(err, errPanic) && len(batch) > 1 {
		// Rolled back. Retry one write per transaction, so that only the writes that
		// touch the damaged page fail.
		for _, op := range batch {
			s.commit([]*writeOp{op})
		}
		return
	}
	// The whole transaction rolled back: nothing in it happened.
	err = commitError(err)
	for _, op := range batch {
		op.created, op.err = false, err
	}
}

// deleteChunks deletes the chunks of the id of prefix from index from on.
func deleteChunks(chunks *bolt.Bucket, prefix []byte, from int) error {
	var keys [][]byte
	c := chunks.Cursor()
	for k, _ := c.Seek(chunkKey(prefix, from)); k != nil; k, _ = c.Next() {
		if _, ok := chunkIndex(k, prefix); !ok {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := chunks.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// damagedSize is the best estimate of the data size of a record that cannot be parsed,
// for the storage_bytes total: the length of its chunks when it has any (exact); else
// the record's own size field if the value's length agrees with it and with its
// content-type length (exact unless the damage hit exactly those fields); else the
// value's length minus a header with an empty content type.
func damagedSize(old []byte, chunks *bolt.Bucket, prefix []byte) int64 {
	var total int64
	c := chunks.Cursor()
	for k, v := c.Seek(chunkKey(prefix, 0)); k != nil; k, v = c.Next() {
		if _, ok := chunkIndex(k, prefix); !ok {
			break
		}
		total += int64(len(v))
	}
	if total > 0 {
		return total
	}
	return damagedSizeInline(old)
}

// damagedSizeInline is damagedSize for a record without chunks.
func damagedSizeInline(old []byte) int64 {
	if len(old) >= v2Fixed {
		n := int(binary.BigEndian.Uint16(old[2:4]))
		if end := v2Fixed + n; len(old) >= end {
			size := binary.BigEndian.Uint64(old[v2Header+n+hashSize:])
			if uint64(len(old)-end) == size {
				return int64(size)
			}
		}
	}
	if len(old) >= v1Header && old[0] == formatV1 {
		if n := int(binary.BigEndian.Uint16(old[1:3])); len(old) >= v1Header+n+hashSize {
			return int64(len(old) - v1Header - n - hashSize)
		}
		return int64(max(0, len(old)-v1Header-hashSize))
	}
	return int64(max(0, len(old)-v2Fixed))
}

// commitError classifies a failed commit: a full disk (or a file that may not grow) is
// storage.ErrNoSpace, which the API answers with 507. bbolt wraps the error of growing
// the file with %s, so the message is matched too.
func commitError(err error) error {
	msg := err.Error()
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) ||
		strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error()) ||
		strings.Contains(msg, syscall.EFBIG.Error()) {
		return fmt.Errorf("%w: bolt commit: %v", storage.ErrNoSpace, err)
	}
	if errors.Is(err, errPanic) {
		return fmt.Errorf("%w: bolt commit: %v", storage.ErrCorrupt, err)
	}
	return fmt.Errorf("bolt commit: %w", err)
}

// update is db.Update that turns a panic into an error: bbolt panics on some damaged
// pages, and Update has rolled the transaction back by the time the panic gets here.
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return s.db.Update(fn)
}

func readInt(b *bolt.Bucket, key []byte) int64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func writeInt(b *bolt.Bucket, key []byte, n int64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// Stats reports the object count and bytes stored (storage.Store).
func (s *Store) Stats() (storage.Stats, error) {
	var st storage.Stats
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		st = storage.Stats{Objects: readInt(meta, countKey), Bytes: readInt(meta, bytesKey)}
		return nil
	})
	return st, err
}

// Ready reports whether the store can serve (storage.Store).
func (s *Store) Ready(context.Context) error {
	select {
	case <-s.quit:
		return storage.ErrUnavailable
	default:
	}
	return s.view(func(tx *bolt.Tx) error { return nil })
}

func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	// bbolt panics on some damaged pages (a bad page type, an element past the page).
	// View has rolled the transaction back by the time the panic reaches here, so one
	// damaged page fails its own request instead of the process.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading the file failed: %v", storage.ErrCorrupt, p)
		}
	}()
	err = s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrUnavailable
	}
	return err
}

// Close stops the committer after its current transaction and closes the file.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.quit)
		<-s.exited
		err = s.db.Close()
	})
	return err
}
