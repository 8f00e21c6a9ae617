package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte page header,
// then magic, version, page size, flags (4 bytes each), the root bucket (16), the
// freelist page id, the high-water page id, the transaction id (8 each) and an FNV-64a
// checksum of everything before it. Written in the machine's byte order.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaSumLen     = 56 // bytes of the meta the checksum covers
	metaLen        = metaSumLen + 8
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// checkFile validates path against its own meta pages before bbolt maps it. bbolt trusts
// the file: a truncated one is mapped past its end and the first read of a missing page
// kills the process (SIGBUS/SIGSEGV), and a 0-byte one is silently initialised as a new,
// empty store. A missing file is fine (a new store); anything else that is not a whole
// bbolt file is an error naming the file and the problem.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return checkMeta(f, st.Size(), path)
}

// checkMeta is checkFile on the file's contents f, of size bytes.
func checkMeta(f io.ReaderAt, size int64, path string) error {
	if size == 0 {
		return fmt.Errorf("%s is empty (0 bytes), not a bbolt database: refusing to start an empty store over it (move it away to start afresh)", path)
	}
	m0, err0 := readMeta(f, 0, size)
	var metas []boltMeta
	if err0 == nil {
		metas = append(metas, m0)
	}
	// The second meta page sits one page in; its page size comes from the first, or,
	// when the first is damaged, is one of the sizes bbolt would try.
	sizes := []int64{4096, 1024, 2048, 8192, 16384, 32768, 65536}
	if err0 == nil {
		sizes = []int64{int64(m0.pageSize)}
	}
	var err1 error
	for i, ps := range sizes {
		m1, err := readMeta(f, ps, size)
		if err == nil && int64(m1.pageSize) == ps {
			metas, err1 = append(metas, m1), nil
			break
		}
		if i == 0 { // report what was found where the page usually is
			err1 = err
			if err == nil {
				err1 = fmt.Errorf("page size %d, expected %d", m1.pageSize, ps)
			}
		}
	}
	if len(metas) == 0 {
		return fmt.Errorf("%s (%d bytes) is not a usable bbolt database: meta page 0: %v; meta page 1: %v", path, size, err0, err1)
	}
	// bbolt uses the valid meta with the highest transaction id.
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	if want := int64(m.pgid) * int64(m.pageSize); size < want {
		return fmt.Errorf("%s is truncated: %d bytes, but its meta page (transaction %d) says it holds %d pages of %d bytes (%d bytes)",
			path, size, m.txid, m.pgid, m.pageSize, want)
	}
	return nil
}

func readMeta(f io.ReaderAt, off, size int64) (boltMeta, error) {
	var buf [boltPageHeader + metaLen]byte
	if off+int64(len(buf)) > size {
		return boltMeta{}, fmt.Errorf("file ends at byte %d, before the meta page at %d", size, off)
	}
	if _, err := f.ReadAt(buf[:], off); err != nil {
		return boltMeta{}, err
	}
	b := buf[boltPageHeader:]
	e := binary.NativeEndian
	if magic := e.Uint32(b[0:]); magic != boltMagic {
		return boltMeta{}, fmt.Errorf("bad magic %#x", magic)
	}
	if v := e.Uint32(b[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("unsupported version %d", v)
	}
	h := fnv.New64a()
	h.Write(b[:metaSumLen])
	if sum := e.Uint64(b[metaSumLen:]); sum != h.Sum64() {
		return boltMeta{}, fmt.Errorf("checksum mismatch")
	}
	m := boltMeta{pageSize: e.Uint32(b[8:]), pgid: e.Uint64(b[40:]), txid: e.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("bad page size %d", m.pageSize)
	}
	return m, nil
}
