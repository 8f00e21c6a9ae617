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
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// FileName is the database file inside the data directory.
const FileName = "objects.db"

var (
	objectsBucket = []byte("objects")
	metaBucket    = []byte("meta")
	countKey      = []byte("objects")
	bytesKey      = []byte("bytes")
)

// maxBatch bounds one group commit so a flood of writers cannot make one transaction
// (and the memory it dirties) arbitrarily large.
const maxBatch = 512

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
	etag        string
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
		if _, err := tx.CreateBucketIfNotExists(objectsBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
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

// Value layout: 1-byte format version, 2-byte content-type length, content type,
// 32-byte SHA-256, data. Versioned so the layout can change without a migration tool.
const (
	formatV1   = 1
	headerSize = 1 + 2
	hashSize   = 32
)

func encode(contentType string, etag string, data []byte) ([]byte, error) {
	if len(contentType) > 0xffff {
		return nil, errors.New("content type too long")
	}
	sum, err := hex.DecodeString(etag)
	if err != nil || len(sum) != hashSize {
		return nil, fmt.Errorf("bad etag %q", etag)
	}
	v := make([]byte, 0, headerSize+len(contentType)+hashSize+len(data))
	v = append(v, formatV1)
	v = binary.BigEndian.AppendUint16(v, uint16(len(contentType)))
	v = append(v, contentType...)
	v = append(v, sum...)
	return append(v, data...), nil
}

// decode returns the metadata and a slice of v holding the data (valid only inside the
// transaction that read v).
func decode(v []byte) (storage.Info, []byte, error) {
	if len(v) < headerSize || v[0] != formatV1 {
		return storage.Info{}, nil, errors.New("corrupt record: bad header")
	}
	n := int(binary.BigEndian.Uint16(v[1:3]))
	rest := v[headerSize:]
	if len(rest) < n+hashSize {
		return storage.Info{}, nil, errors.New("corrupt record: truncated")
	}
	data := rest[n+hashSize:]
	return storage.Info{
		ContentType: string(rest[:n]),
		ETag:        hex.EncodeToString(rest[n : n+hashSize]),
		Size:        int64(len(data)),
	}, data, nil
}

func (s *Store) Put(ctx context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	info := storage.NewInfo(contentType, data)
	op := &writeOp{kind: opPut, id: id, contentType: contentType, data: data, etag: info.ETag, cond: cond}
	if err := s.submit(ctx, op); err != nil {
		return storage.PutResult{}, err
	}
	if op.err != nil {
		return storage.PutResult{}, op.err
	}
	return storage.PutResult{Info: info, Created: op.created}, nil
}

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
	for {
		select {
		case op := <-s.writes:
			batch = append(batch[:0], op)
		case <-s.quit:
			return
		}
		// Take every writer already waiting; they share this transaction's fsync.
	drain:
		for len(batch) < maxBatch {
			select {
			case op := <-s.writes:
				batch = append(batch, op)
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

func (s *Store) commit(batch []*writeOp) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		objects, meta := tx.Bucket(objectsBucket), tx.Bucket(metaBucket)
		count, size := readInt(meta, countKey), readInt(meta, bytesKey)
		for _, op := range batch {
			op.created, op.err = false, nil
			old := objects.Get([]byte(op.id))
			var oldSize int64
			var oldETag string
			if old != nil {
				info, _, err := decode(old)
				if err != nil {
					return fmt.Errorf("id %q: %w", op.id, err)
				}
				oldSize, oldETag = info.Size, info.ETag
			}
			// The condition is checked here, inside the transaction that writes: it sees
			// the effect of every earlier op of this batch, and fails only its own op.
			if old != nil || op.kind == opPut {
				if op.err = op.cond.Check(old != nil, oldETag); op.err != nil {
					continue
				}
			}
			switch op.kind {
			case opPut:
				v, err := encode(op.contentType, op.etag, op.data)
				if err != nil {
					op.err = err
					continue
				}
				if err := objects.Put([]byte(op.id), v); err != nil {
					return err
				}
				if old == nil {
					op.created = true
					count++
				}
				size += int64(len(op.data)) - oldSize
			case opDelete:
				if old == nil {
					op.err = storage.ErrNotFound
					continue
				}
				if err := objects.Delete([]byte(op.id)); err != nil {
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
	if err != nil {
		// The whole transaction rolled back: nothing in it happened.
		for _, op := range batch {
			op.created, op.err = false, fmt.Errorf("bolt commit: %w", err)
		}
	}
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

func (s *Store) Get(_ context.Context, id string) (*storage.Object, error) {
	var obj *storage.Object
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(objectsBucket).Get([]byte(id))
		if v == nil {
			return storage.ErrNotFound
		}
		info, data, err := decode(v)
		if err != nil {
			return err
		}
		// Copy out: v points into the mmap, valid only during the transaction.
		obj = &storage.Object{Info: info, Body: newBody(data)}
		return nil
	})
	return obj, err
}

func (s *Store) Stat(_ context.Context, id string) (storage.Info, error) {
	var info storage.Info
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(objectsBucket).Get([]byte(id))
		if v == nil {
			return storage.ErrNotFound
		}
		var err error
		info, _, err = decode(v)
		return err
	})
	return info, err
}

func (s *Store) Stats() (storage.Stats, error) {
	var st storage.Stats
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		st = storage.Stats{Objects: readInt(meta, countKey), Bytes: readInt(meta, bytesKey)}
		return nil
	})
	return st, err
}

func (s *Store) Ready(context.Context) error {
	select {
	case <-s.quit:
		return storage.ErrUnavailable
	default:
	}
	return s.view(func(tx *bolt.Tx) error { return nil })
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
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

func newBody(data []byte) io.ReadCloser {
	return io.NopCloser(bytes.NewReader(bytes.Clone(data)))
}
