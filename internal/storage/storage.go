// Package storage defines the object store the API serves from, and what every backend
// (memory, bolt, s3) must guarantee. The conformance suite in storagetest checks those
// guarantees; a new backend is done when it passes that suite.
package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
)

var (
	// ErrNotFound: no object under that id.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the backend cannot serve right now (remote store unreachable, closed,
	// timed out). The API answers 503, not 500: retrying later may succeed.
	ErrUnavailable = errors.New("storage unavailable")
)

// Info describes a stored object.
type Info struct {
	ContentType string
	// ETag is the hex SHA-256 of the content, without quotes. It is computed once, on PUT,
	// and stored beside the bytes so GET and HEAD never hash.
	ETag string
	Size int64
}

// PutResult is what a Put stored.
type PutResult struct {
	Info
	Created bool // the id was new
}

// NewInfo is the metadata of data stored with contentType.
func NewInfo(contentType string, data []byte) Info {
	return Info{ContentType: contentType, ETag: ETag(data), Size: int64(len(data))}
}

// Object is an object's metadata and a reader over its bytes. The caller must close Body.
type Object struct {
	Info
	Body io.ReadCloser
}

// Store is an object store keyed by id. Implementations are safe for concurrent use.
// Ids are opaque, already-validated strings (see api.ValidateID); the store must keep them
// byte for byte.
type Store interface {
	// Put stores data under id, replacing any previous object, and returns what it
	// stored (so callers need not hash the data again) and whether the id was new. When
	// Put returns nil the object is durable as far as the backend promises durability
	// (bolt: fsync'd).
	Put(ctx context.Context, id string, contentType string, data []byte) (PutResult, error)
	// Get returns the object, or ErrNotFound.
	Get(ctx context.Context, id string) (*Object, error)
	// Stat returns the object's metadata without its bytes, or ErrNotFound.
	Stat(ctx context.Context, id string) (Info, error)
	// Delete removes the object, or returns ErrNotFound if there was none.
	Delete(ctx context.Context, id string) error
	// Ready reports whether the store can serve requests now (readiness probe).
	Ready(ctx context.Context) error
	// Close releases the store. Calls after Close return ErrUnavailable.
	Close() error
}

// Stats are the store's current totals, for the storage_objects and storage_bytes gauges.
type Stats struct {
	Objects int64
	Bytes   int64
}

// StatsReporter is implemented by backends that know their totals cheaply. Backends that
// cannot (s3: it would mean listing the bucket) do not implement it, and the gauges are
// then not exported for them.
type StatsReporter interface {
	Stats() (Stats, error)
}

// ETag returns the strong entity tag stored with data: its hex SHA-256.
func ETag(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
