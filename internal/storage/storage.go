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
	// ErrNotFound means there is no object under that id.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable means the backend cannot serve right now (remote store unreachable, closed,
	// timed out). The API answers 503, not 500: retrying later may succeed.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrPreconditionFailed means the write's Condition did not hold when the write was
	// applied; nothing was written. The API answers 412.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrConditionUnsupported means the backend cannot enforce this Condition atomically
	// (s3 on a server without conditional writes). Nothing was written: a guarded write
	// is refused rather than turned into a silent overwrite. The API answers 501.
	ErrConditionUnsupported = errors.New("condition cannot be enforced atomically by this backend")
	// ErrCorrupt means the stored object failed verification against the checksum stored with
	// it (damaged disk or file). Never served; the API answers 500. Wrapped with the id.
	ErrCorrupt = errors.New("stored object is corrupt")
	// ErrNoSpace means a write failed because the backend's disk is full (ENOSPC) or the file
	// may not grow (EFBIG: a file size limit). Nothing of the write was stored; reads
	// still work. The API answers 507 Insufficient Storage.
	ErrNoSpace = errors.New("no space left for the write")
)

// Condition is a write's precondition, evaluated atomically with the write.
// The zero Condition always holds.
type Condition struct {
	IfMatch     []string // unquoted strong ETags, or "*" (any existing object); nil: no If-Match
	IfNoneMatch []string // unquoted ETags, or "*" (no object may exist); nil: none
}

// IsZero reports whether c has no precondition.
func (c Condition) IsZero() bool { return c.IfMatch == nil && c.IfNoneMatch == nil }

// Check evaluates c against the current state of the id: whether an object exists and
// its ETag. It returns nil or ErrPreconditionFailed. Backends call it at the point where
// the write is applied (under the lock, inside the transaction), never before.
// Following RFC 9110 section 13.2.2, If-Match is evaluated first, and If-None-Match
// after it.
func (c Condition) Check(exists bool, etag string) error {
	if c.IfMatch != nil && !(exists && matches(c.IfMatch, etag)) {
		return ErrPreconditionFailed
	}
	if c.IfNoneMatch != nil && exists && matches(c.IfNoneMatch, etag) {
		return ErrPreconditionFailed
	}
	return nil
}

// matches reports whether list is "*" or contains etag (an existing object's).
func matches(list []string, etag string) bool {
	for _, t := range list {
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

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
	// (bolt: fsync'd). If cond does not hold at the moment of the write, Put writes
	// nothing and returns ErrPreconditionFailed.
	//
	// Put takes ownership of data; the caller must not modify it afterwards (so a PUT of
	// N bytes is held in memory once, not copied).
	Put(ctx context.Context, id, contentType string, data []byte, cond Condition) (PutResult, error)
	// Get returns the object, or ErrNotFound.
	Get(ctx context.Context, id string) (*Object, error)
	// Stat returns the object's metadata without its bytes, or ErrNotFound.
	Stat(ctx context.Context, id string) (Info, error)
	// Delete removes the object, or returns ErrNotFound if there was none, or
	// ErrPreconditionFailed if there is one and cond does not hold for it (a missing
	// object is ErrNotFound whatever cond says).
	Delete(ctx context.Context, id string, cond Condition) error
	// Ready reports whether the store can serve requests now (readiness probe).
	Ready(ctx context.Context) error
	// Close releases the store. Calls after Close return ErrUnavailable; Close itself is
	// idempotent (later calls return nil), as the conformance suite checks.
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
