package s3

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Object key layout. It is part of the on-bucket format: every replica, and every future
// version, must map an id to the same key, so this must never change.
//
// key = Prefix + name(id), where name(id) is the id with every byte outside
// [A-Za-z0-9-_.] and outside non-ASCII UTF-8 written as %XX (upper-case hex), and a leading
// '.' written %2E. The result is a single path segment: no '/', never "." or "..", no
// control characters. That matters for S3 servers that map keys to a file system (versitygw
// posix, MinIO): there ids "a" and "a/b" would collide as file and directory, and ".." or a
// segment over 255 bytes is rejected.
//
// When the escaped name is longer than maxNameLen bytes (or empty), name(id) is "~" + the hex SHA-256
// of the id. '~' is always escaped in short names, so the two forms cannot collide; and the
// store never lists keys, so it never needs to recover an id from its key.
const maxNameLen = 255

// hashedMark starts the names of ids too long to spell out.
const hashedMark = '~'

// maxPrefixLen keeps Prefix + the longest name within S3's 1024-byte key limit.
const maxPrefixLen = 1024 - maxNameLen

const upperHex = "0123456789ABCDEF"

func keep(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// objectName maps an id to its name inside the prefix (see the layout above).
func objectName(id string) string {
	if id == "" {
		// An empty name would make the key the bare prefix (or no key at all).
		return hashedName(id)
	}
	// Non-ASCII bytes are kept only in valid UTF-8, so keys are always valid UTF-8 (S3
	// requires it); an invalid id has all its high bytes escaped instead.
	keepHigh := utf8.ValidString(id)
	var b strings.Builder
	b.Grow(len(id))
	for i := 0; i < len(id); i++ {
		c := id[i]
		if keep(c) && !(i == 0 && c == '.') || c >= utf8.RuneSelf && keepHigh {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
		if b.Len() > maxNameLen {
			return hashedName(id)
		}
	}
	return b.String()
}

func hashedName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return string(hashedMark) + hex.EncodeToString(sum[:])
}

func (s *Store) key(id string) string { return s.prefix + objectName(id) }
