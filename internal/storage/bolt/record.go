package bolt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"

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
//	size (8) | chunk size (4) | CRC-32C of the data (4) |
//	CRC-32C of the id and every record byte before it (4)
//
// followed, for an object of at most inlineMax bytes (flagInline), by the data in the
// same value. A larger object's data is in the chunks bucket, cut into chunks of the
// record's chunk size (64 KiB), under keys
//
//	id length (2) | id | chunk index (4, big-endian)
//
// so an object's chunks are adjacent and in order. Why chunks: bbolt never splits a
// leaf of four or fewer keys, so four adjacent 10 MiB values would share one leaf, and
// writing any key of that leaf rewrites (reads through the map, and allocates a page
// buffer for) all four: 40 MiB for a 10 MiB PUT. With 64 KiB chunks a leaf holds a few
// chunks, and a commit allocates about the bytes it writes. The chunks are sub-slices of
// the caller's buffer: bbolt copies them into its page buffers at commit, and nothing
// else copies them. (Small objects stay in one value because a second bucket costs a
// second B-tree update per write: 12% more CPU per 1 KiB PUT when measured.)
//
// The record's own checksum covers the flags, content type, ETag, size, chunk size and
// data checksum (and the key, so a record cannot pass for another id's), so a damaged
// header is detected as surely as damaged data.
const (
	formatV1 = 1
	formatV2 = 2

	flagInline = 1 << 0

	hashSize = 32
	v1Header = 1 + 2                         // before the content type
	v2Header = 1 + 1 + 2                     // before the content type
	v2Fixed  = v2Header + 32 + 8 + 4 + 4 + 4 // a v2 record without its content type

	// inlineMax is the largest object stored in its record's value. It is below the GET
	// window, so an inline object is always copied whole by the transaction that verifies it.
	inlineMax = 32 << 10
	// chunkSize is what new records are cut into; window is a multiple of it.
	chunkSize = 64 << 10
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
	inline  bool // the data follows the record in the same value (v1 always)
	// chunkSize is the size of every chunk but the last when the data is not inline.
	chunkSize int
	sum       [hashSize]byte // SHA-256 of the data
	dataCRC   uint32         // v2
}

// corrupt is the error for a record that fails verification.
func corrupt(id, format string, args ...any) error {
	return fmt.Errorf("%w: id %q: %s", storage.ErrCorrupt, id, fmt.Sprintf(format, args...))
}

// encodeV2 returns the record for data; when inline, data is appended to it (a copy, of
// at most inlineMax bytes), otherwise data is stored in chunks of chunkSize.
func encodeV2(id, contentType string, sum [hashSize]byte, data []byte) (v []byte, inline bool, err error) {
	if len(contentType) > 0xffff {
		return nil, false, errors.New("content type too long")
	}
	inline = len(data) <= inlineMax
	n := v2Fixed + len(contentType)
	var flags byte
	cs := uint32(chunkSize)
	if inline {
		flags |= flagInline
		n += len(data)
		cs = 0
	}
	v = make([]byte, 0, n)
	v = append(v, formatV2, flags)
	v = binary.BigEndian.AppendUint16(v, uint16(len(contentType)))
	v = append(v, contentType...)
	v = append(v, sum[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(len(data)))
	v = binary.BigEndian.AppendUint32(v, cs)
	v = binary.BigEndian.AppendUint32(v, crc32.Checksum(data, castagnoli))
	v = binary.BigEndian.AppendUint32(v, headerCRC(id, v))
	if inline {
		v = append(v, data...)
	}
	return v, inline, nil
}

// chunkPrefix is the start of every chunk key of id.
func chunkPrefix(id string) []byte {
	p := make([]byte, 0, 2+len(id)+4)
	p = binary.BigEndian.AppendUint16(p, uint16(len(id)))
	return append(p, id...)
}

// chunkKey is the key of chunk i of the id whose chunkPrefix is prefix.
func chunkKey(prefix []byte, i int) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, len(prefix)+4), prefix...), uint32(i))
}

// parseChunkKey returns the id and index of a chunk key.
func parseChunkKey(k []byte) (id string, i int, ok bool) {
	if len(k) < 2 {
		return "", 0, false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) != 2+n+4 {
		return "", 0, false
	}
	return string(k[2 : 2+n]), int(binary.BigEndian.Uint32(k[2+n:])), true
}

func headerCRC(id string, rec []byte) uint32 {
	// A read-only view of the id's bytes: converting would allocate on every read.
	c := crc32.Update(0, castagnoli, unsafe.Slice(unsafe.StringData(id), len(id)))
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
		r.chunkSize = int(binary.BigEndian.Uint32(p[8:]))
		r.dataCRC = binary.BigEndian.Uint32(p[12:])
		if !r.inline && r.chunkSize == 0 {
			return record{}, nil, corrupt(id, "record of chunked data has chunk size 0")
		}
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

// lookup finds id's record and verifies the record's header (a v2 record's checksum;
// nothing about the data). It returns the data too when it shares the record's value;
// r.walk reaches chunked data. Both are valid only inside tx.
func lookup(tx *bolt.Tx, id string) (record, []byte, error) {
	v := tx.Bucket(objectsBucket).Get([]byte(id))
	if v == nil {
		return record{}, nil, storage.ErrNotFound
	}
	r, data, err := parseRecord(id, v)
	if err != nil {
		return record{}, nil, err
	}
	if r.inline && int64(len(data)) != r.info.Size {
		return record{}, nil, corrupt(id, "data is %d bytes, its record says %d", len(data), r.info.Size)
	}
	return r, data, nil
}

// chunks is the number of chunks of a record whose data is not inline.
func (r record) chunks() int {
	return int((r.info.Size + int64(r.chunkSize) - 1) / int64(r.chunkSize))
}

// walk calls fn with the object's data from chunk index from on, in order, until fn
// returns false: the inline data as one piece (from must be 0), or each chunk, checked
// to be present and of the length the record implies. The pieces point into bbolt's
// map: valid only inside tx, never to be modified.
func (r record) walk(tx *bolt.Tx, id string, inline []byte, from int, fn func(piece []byte) bool) error {
	if r.inline {
		fn(inline)
		return nil
	}
	prefix := chunkPrefix(id)
	n := r.chunks()
	c := tx.Bucket(chunksBucket).Cursor()
	k, v := c.Seek(chunkKey(prefix, from))
	for i := from; i < n; i++ {
		if ki, ok := chunkIndex(k, prefix); !ok || ki != i {
			return corrupt(id, "chunk %d of %d missing", i, n)
		}
		want := r.chunkSize
		if i == n-1 {
			want = int(r.info.Size - int64(i)*int64(r.chunkSize))
		}
		if len(v) != want {
			return corrupt(id, "chunk %d is %d bytes, its record says %d", i, len(v), want)
		}
		if !fn(v) {
			return nil
		}
		k, v = c.Next()
	}
	return nil
}

// chunkIndex returns the index of chunk key k if it belongs to the id of prefix.
func chunkIndex(k, prefix []byte) (int, bool) {
	if len(k) != len(prefix)+4 || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(k[len(prefix):])), true
}

// verify checks all of the object's data against the record: CRC-32C for v2, SHA-256
// for v1 (which has no cheaper checksum). It reads the data where it lies in the map:
// no copy.
func (r record) verify(tx *bolt.Tx, id string, inline []byte) error {
	switch r.version {
	case formatV2:
		var crc uint32
		if err := r.walk(tx, id, inline, 0, func(p []byte) bool {
			crc = crc32.Update(crc, castagnoli, p)
			return true
		}); err != nil {
			return err
		}
		if crc != r.dataCRC {
			return corrupt(id, "data checksum mismatch (%08x, stored %08x)", crc, r.dataCRC)
		}
	default:
		if got := sha256.Sum256(inline); got != r.sum {
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
