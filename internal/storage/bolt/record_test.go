package bolt

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// FuzzRecord: any bytes stored as a record parse without a panic; a record encoded for
// an id, content type and data parses back to them; and any single damaged byte of it
// (header or inline data) is detected, by the record's checksum or the data's.
func FuzzRecord(f *testing.F) {
	f.Add("id", "text/plain", []byte("hello"), []byte{}, uint16(0))
	f.Add("a", "", []byte{}, []byte{2, 0, 0, 0}, uint16(3))
	f.Add("big", "application/octet-stream", bytes.Repeat([]byte{7}, inlineMax+1), []byte{1, 0, 1, 'x'}, uint16(10))
	v1 := []byte{formatV1, 0, 1, 'x'}
	f.Add("v1", "x", []byte("data"), append(v1, make([]byte, 40)...), uint16(1))
	f.Fuzz(func(t *testing.T, id, ct string, data, stored []byte, at uint16) {
		parseRecord(id, stored) // must not panic, whatever the bytes
		damagedSizeInline(stored)

		if len(ct) > 255 {
			ct = ct[:255]
		}
		sum := sha256.Sum256(data)
		v, inline, err := encodeV2(id, ct, sum, data)
		if err != nil {
			t.Fatal(err)
		}
		r, got, err := parseRecord(id, v)
		if err != nil {
			t.Fatalf("parse of a fresh record: %v", err)
		}
		want := storage.NewInfo(ct, data)
		if r.info != want || r.inline != inline || (inline && !bytes.Equal(got, data)) {
			t.Fatalf("parse = %+v inline %v, want %+v inline %v", r.info, r.inline, want, inline)
		}
		if len(v) == 0 {
			return
		}
		i := int(at) % len(v)
		bad := bytes.Clone(v)
		bad[i] ^= 0x5a
		r, got, err = parseRecord(id, bad)
		if err == nil && r.inline {
			if int64(len(got)) != r.info.Size {
				err = errors.New("length")
			} else {
				err = r.verify(nil, id, got)
			}
		}
		if !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("byte %d of a %d-byte record damaged: not detected (%v)", i, len(v), err)
		}
	})
}

// FuzzCheckMeta: whatever a file's first pages hold, the check before bbolt maps it
// answers without a panic, and a file it accepts is at least as long as its meta says.
func FuzzCheckMeta(f *testing.F) {
	f.Add([]byte{}, int64(0))
	f.Add(make([]byte, 8192), int64(8192))
	f.Add(bytes.Repeat([]byte{0xed, 0xda, 0x0c, 0xed}, 2048), int64(1<<20))
	// A real, valid file, and the same cut short.
	dir := f.TempDir()
	s, err := Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	valid, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	if err := checkMeta(bytes.NewReader(valid), int64(len(valid)), FileName); err != nil {
		f.Fatalf("a fresh file fails the check: %v", err)
	}
	f.Add(valid, int64(len(valid)))
	f.Add(valid[:len(valid)/2], int64(len(valid)/2))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size < int64(len(b)) || size > 1<<40 {
			size = int64(len(b))
		}
		_ = checkMeta(bytes.NewReader(b), size, "objects.db")
	})
}
