package bolt_test

import (
	"crypto/sha256"
	"hash/crc32"
	"testing"
)

// BenchmarkChecksum compares the two ways a read could be verified: SHA-256 (the ETag,
// already stored) and CRC-32C (Castagnoli, hardware-accelerated on amd64 and arm64).
// The numbers chose CRC-32C for formatV2; docs/storage-backends.md has them.
func BenchmarkChecksum(b *testing.B) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"10MiB", 10 << 20}} {
		data := randBytes(1, size.n)
		b.Run("sha256/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				sha256.Sum256(data)
			}
		})
		b.Run("crc32c/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				crc32.Checksum(data, table)
			}
		})
	}
}
