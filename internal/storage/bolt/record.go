package bolt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// Record formats. The first byte of a record in the objects bucket says which.
//
// formatV1 (written before integrity checks existed, still read): one value holding
// version, 2-byte content-type length, content type, 32-byte SHA-256, then the data.
// Verified on read by hashing the data with SHA-256 (slower; see docs/storage-backends.md).
// A PUT rewrites the id in formatV2.
//
// formatV2: a metadata record in the objects bucket,
//
//	version (1) | flags (1) | content-type length (2) | content type | SHA-256 (32) |
//	size (8) | CRC-32C of the data (4) | CRC-32C of the id and every record byte before it (4)
//
// followed, for an object of at most inlineMax bytes (flagInline), by the data in the
// same value; a larger object's data is under the same key in the data bucket, so that
// a PUT hands bbolt the caller's slice instead of a copy of it joined to a header. (Small
// objects stay in one value because a second bucket costs a second B-tree update per
// write: 12% more CPU per 1 KiB PUT when measured.) The record's own checksum covers the
// flags, content type, ETag, size and data checksum (and the key, so a record cannot pass
// for another id's), so a damaged header is detected as surely as damaged data.
const (
	formatV1 = 1
	formatV2 = 2

	flagInline = 1 << 0

	hashSize = 32
	v1Header = 1 + 2                     // before the content type
	v2Header = 1 + 1 + 2                 // before the content type
	v2Fixed  = v2Header + 32 + 8 + 4 + 4 // a v2 record without its content type

	// inlineMax is the largest object stored in its record's value. It is below the GET
	// window, so an inline object is always copied whole by the transaction that verifies it.
	inlineMax = 32 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a parsed, header-verified metadata record.
type record struct {
	info storage.Info
	// stored is the record as stored (v2), or a v1 value's header (everything before
	// the data). Two reads that find the same stored bytes (and, v1, the same data
	// length) read the same version of the object: the checksum or hash inside it fixes
	// the data.
	stored  []byte
	version byte
	inline  bool           // the data follows the record in the same value (v1 always)
	sum     [hashSize]byte // SHA-256 of the data
	dataCRC uint32         // v2
}

// corrupt is the error for a record that fails verification.
func corrupt(id, format string, args ...any) error {
	return fmt.Errorf("%w: id %q: %s", storage.ErrCorrupt, id, fmt.Sprintf(format, args...))
}

// encodeV2 returns the record for data; when inline, data is appended to it (a copy, of
// at most inlineMax bytes), otherwise data is stored apart under the same key.
func encodeV2(id, contentType string, sum [hashSize]byte, data []byte) (v []byte, inline bool, err error) {
	if len(contentType) > 0xffff {
		return nil, false, errors.New("content type too long")
	}
	inline = len(data) <= inlineMax
	n := v2Fixed + len(contentType)
	var flags byte
	if inline {
		flags |= flagInline
		n += len(data)
	}
	v = make([]byte, 0, n)
	v = append(v, formatV2, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(len(contentType)))
	v = append(v, contentType...)
	v = append(v, sum[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(len(data)))
	v = binary.BigEndian.AppendUint32(v, crc32.Checksum(data, castagnoli))
	v = binary.BigEndian.AppendUint32(v, headerCRC(id, v))
	if inline {
		v = append(v, data...)
	}
	return v, inline, nil
}

func headerCRC(id string, rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(id))
	return crc32.Update(c, castagnoli, rec)
}

// parseRecord parses and verifies the record v stored under id (a v2 record's own
// checksum; nothing yet about the data). When the data shares the value (v1, inline v2)
// it is returned too.
func parseRecord(id string, v []byte) (record, []byte, error) {
	if len(v) == 0 {
		return record{}, nil, corrupt(id, "empty record")
	}
	switch v[0] {
	case formatV2:
		if len(v) < v2Fixed {
			return record{}, nil, corrupt(id, "record of %d bytes is shorter than any header", len(v))
		}
		n := int(binary.BigEndian.Uint16(v[2:4]))
		end := v2Fixed + n
		if len(v) < end {
			return record{}, nil, corrupt(id, "record is %d bytes, its content-type length says at least %d", len(v), end)
		}
		if got, want := headerCRC(id, v[:end-4]), binary.BigEndian.Uint32(v[end-4:end]); got != want {
			return record{}, nil, corrupt(id, "record checksum mismatch (%08x, stored %08x)", got, want)
		}
		r := record{stored: v[:end], version: formatV2, inline: v[1]&flagInline != 0}
		p := v[v2Header+n:]
		copy(r.sum[:], p)
		p = p[hashSize:]
		size := binary.BigEndian.Uint64(p)
		r.dataCRC = binary.BigEndian.Uint32(p[8:])
		r.info = storage.Info{ContentType: string(v[v2Header : v2Header+n]), ETag: hex.EncodeToString(r.sum[:]), Size: int64(size)}
		var data []byte
		switch {
		case r.inline:
			data = v[end:]
		case len(v) != end:
			return record{}, nil, corrupt(id, "record is %d bytes, its content-type length says %d", len(v), end)
		}
		return r, data, nil
	case formatV1:
		if len(v) < v1Header {
			return record{}, nil, corrupt(id, "record of %d bytes is shorter than any header", len(v))
		}
		n := int(binary.BigEndian.Uint16(v[1:3]))
		if len(v) < v1Header+n+hashSize {
			return record{}, nil, corrupt(id, "v1 record of %d bytes is shorter than its header", len(v))
		}
		hdr := v1Header + n + hashSize
		r := record{stored: v[:hdr], version: formatV1, inline: true}
		copy(r.sum[:], v[v1Header+n:])
		data := v[hdr:]
		r.info = storage.Info{ContentType: string(v[v1Header : v1Header+n]), ETag: hex.EncodeToString(r.sum[:]), Size: int64(len(data))}
		return r, data, nil
	}
	return record{}, nil, corrupt(id, "unknown record format %d", v[0])
}

// lookup finds id's record and its data (both valid only inside tx) and verifies the
// record's header; with verifyData it also verifies the data against the record.
func lookup(tx *bolt.Tx, id string, verifyData bool) (record, []byte, error) {
	key := []byte(id)
	v := tx.Bucket(objectsBucket).Get(key)
	if v == nil {
		return record{}, nil, storage.ErrNotFound
	}
	r, data, err := parseRecord(id, v)
	if err != nil {
		return record{}, nil, err
	}
	if !r.inline {
		data = tx.Bucket(dataBucket).Get(key)
		if data == nil && r.info.Size > 0 {
			return record{}, nil, corrupt(id, "data missing")
		}
	}
	if int64(len(data)) != r.info.Size {
		return record{}, nil, corrupt(id, "data is %d bytes, its record says %d", len(data), r.info.Size)
	}
	if verifyData {
		if err := r.verify(id, data); err != nil {
			return record{}, nil, err
		}
	}
	return r, data, nil
}

// verify checks data against the record: CRC-32C for v2, SHA-256 for v1 (which has no
// cheaper checksum).
func (r record) verify(id string, data []byte) error {
	switch r.version {
	case formatV2:
		if got := crc32.Checksum(data, castagnoli); got != r.dataCRC {
			return corrupt(id, "data checksum mismatch (%08x, stored %08x)", got, r.dataCRC)
		}
	default:
		if got := sha256.Sum256(data); got != r.sum {
			return corrupt(id, "data SHA-256 mismatch (v1 record)")
		}
	}
	return nil
}

// same reports whether v (the objects bucket's value for the id, read in a later
// transaction) is still the version of the object r describes.
func (r record) same(v []byte) bool {
	if !bytes.HasPrefix(v, r.stored) {
		return false
	}
	if r.inline {
		return int64(len(v)-len(r.stored)) == r.info.Size
	}
	return len(v) == len(r.stored)
}
