package bolt_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func open(t testing.TB, dir string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// raw opens the closed store's file with bbolt itself and runs fn in a write
// transaction: the tests damage records the way a bad disk would.
func raw(t testing.TB, dir string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, bolt.FileName), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// flip returns a copy of v with byte i inverted (bbolt's values must not be modified in place).
func flip(v []byte, i int) []byte {
	v = bytes.Clone(v)
	v[i] ^= 0xff
	return v
}

func put(t testing.TB, s storage.Store, id, ct string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), id, ct, bytes.Clone(data), storage.Condition{}); err != nil {
		t.Fatalf("Put(%q): %v", id, err)
	}
}

func get(s storage.Store, id string) ([]byte, storage.Info, error) {
	obj, err := s.Get(context.Background(), id)
	if err != nil {
		return nil, storage.Info{}, err
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	return b, obj.Info, err
}

func wantCorrupt(t *testing.T, s storage.Store, id string, stat bool) {
	t.Helper()
	if b, _, err := get(s, id); !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), id) {
		t.Errorf("Get(%q) = %d bytes, %v; want ErrCorrupt naming the id", id, len(b), err)
	}
	if _, err := s.Stat(context.Background(), id); stat && !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("Stat(%q) = %v; want ErrCorrupt", id, err)
	}
}

// TestDamageIsDetected damages stored data and every field of a record header, and
// checks that no damaged object is served while the undamaged ones still are.
func TestDamageIsDetected(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	// Objects up to 32 KiB are stored in their record's value, larger ones in 64 KiB chunks.
	small, large := randBytes(1, 1024), randBytes(2, 3<<20)
	ids := []string{"data-small", "data-large", "ct", "etag", "size", "crc", "version", "flags", "large-header", "gone", "good", "good-large"}
	for _, id := range ids {
		data := small
		if strings.Contains(id, "large") || id == "gone" {
			data = large
		}
		put(t, s, id, "text/plain", data)
	}
	s.Close()
	raw(t, dir, func(tx *bbolt.Tx) error {
		objs, chunks := tx.Bucket([]byte("objects")), tx.Bucket([]byte("chunks"))
		rec := func(id string) []byte { return objs.Get([]byte(id)) }
		ct := len("text/plain")
		damage := map[string][]byte{
			"data-small":   flip(rec("data-small"), len(rec("data-small"))-100), // inline data
			"ct":           flip(rec("ct"), 4),                                  // content type
			"etag":         flip(rec("etag"), 4+ct+5),                           // SHA-256
			"size":         flip(rec("size"), 4+ct+32+7),                        // size
			"crc":          flip(rec("crc"), 4+ct+32+8+1),                       // data checksum
			"version":      flip(rec("version"), 0),                             // format byte
			"flags":        flip(rec("flags"), 1),                               // inline flag
			"large-header": flip(rec("large-header"), 4+ct+32+7),                // size of data stored apart
		}
		for id, v := range damage {
			if err := objs.Put([]byte(id), v); err != nil {
				return err
			}
		}
		last := chunkKey("data-large", 3<<20/(64<<10)-1)
		if err := chunks.Put(last, flip(chunks.Get(last), 64<<10-1)); err != nil {
			return err
		}
		return chunks.Delete(chunkKey("gone", 20))
	})
	s = open(t, dir)
	defer s.Close()
	wantCorrupt(t, s, "data-small", false)
	wantCorrupt(t, s, "data-large", false)
	for _, id := range []string{"ct", "etag", "size", "crc", "version", "flags", "large-header", "gone"} {
		wantCorrupt(t, s, id, id != "gone")
	}
	if b, _, err := get(s, "good"); err != nil || !bytes.Equal(b, small) {
		t.Errorf("Get(good) = %d bytes, %v", len(b), err)
	}
	if b, _, err := get(s, "good-large"); err != nil || !bytes.Equal(b, large) {
		t.Errorf("Get(good-large) = %d bytes, %v", len(b), err)
	}
}

// chunkKey is the key of chunk i of id in the chunks bucket: id length (2), id, index (4).
func chunkKey(id string, i int) []byte {
	k := binary.BigEndian.AppendUint16(nil, uint16(len(id)))
	return binary.BigEndian.AppendUint32(append(k, id...), uint32(i))
}

// v1Record is a value in the format written before integrity checks (formatV1).
func v1Record(ct string, data []byte) []byte {
	sum := sha256.Sum256(data)
	v := []byte{1}
	v = binary.BigEndian.AppendUint16(v, uint16(len(ct)))
	v = append(v, ct...)
	v = append(v, sum[:]...)
	return append(v, data...)
}

// TestFormatV1 checks that records written by the previous format are served, verified
// by their SHA-256, and rewritten in the new format by the next PUT.
func TestFormatV1(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	old, big := randBytes(3, 2000), randBytes(4, 1<<20)
	raw(t, dir, func(tx *bbolt.Tx) error {
		objs, meta := tx.Bucket([]byte("objects")), tx.Bucket([]byte("meta"))
		for id, v := range map[string][]byte{
			"old":     v1Record("text/old", old),
			"big":     v1Record("application/big", big),
			"damaged": flip(v1Record("text/old", old), 3+len("text/old")+32+10),
		} {
			if err := objs.Put([]byte(id), v); err != nil {
				return err
			}
		}
		if err := meta.Put([]byte("objects"), binary.BigEndian.AppendUint64(nil, 3)); err != nil {
			return err
		}
		return meta.Put([]byte("bytes"), binary.BigEndian.AppendUint64(nil, uint64(2*len(old)+len(big))))
	})
	s := open(t, dir)
	defer s.Close()
	for id, want := range map[string][]byte{"old": old, "big": big} {
		b, info, err := get(s, id)
		if err != nil || !bytes.Equal(b, want) || info.ETag != storage.ETag(want) {
			t.Errorf("Get(%q) v1 = %d bytes, %+v, %v", id, len(b), info, err)
		}
	}
	wantCorrupt(t, s, "damaged", false)

	// The next PUT of each rewrites it as v2, and the totals stay right.
	res, err := s.Put(context.Background(), "old", "text/new", []byte("new"), storage.Condition{})
	if err != nil || res.Created {
		t.Fatalf("Put over v1 = %+v, %v", res, err)
	}
	if err := s.Delete(context.Background(), "big", storage.Condition{}); err != nil {
		t.Fatalf("Delete of v1: %v", err)
	}
	if b, info, err := get(s, "old"); err != nil || string(b) != "new" || info.ContentType != "text/new" {
		t.Errorf("Get after rewrite = %q, %+v, %v", b, info, err)
	}
	if st, _ := s.Stats(); st.Objects != 2 || st.Bytes != int64(3+len(old)) {
		t.Errorf("Stats = %+v, want 2 objects, %d bytes", st, 3+len(old))
	}
	s.Close()
	raw(t, dir, func(tx *bbolt.Tx) error {
		if v := tx.Bucket([]byte("objects")).Get([]byte("old")); v[0] != 2 {
			t.Errorf("record after PUT is format %d, want 2", v[0])
		}
		return nil
	})
}

// TestGetHoldsOneWindow opens 50 GETs of a 10 MiB object and reads the start of each,
// as 50 slow clients would: the store must not hold a copy of the object per reader.
func TestGetHoldsOneWindow(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	data := randBytes(5, 10<<20)
	put(t, s, "big", "application/octet-stream", data)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var bodies []io.ReadCloser
	p := make([]byte, 1024)
	for range 50 {
		obj, err := s.Get(context.Background(), "big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(obj.Body, p); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, obj.Body)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("50 open GETs of a 10 MiB object allocated %.1f MiB", float64(allocated)/(1<<20))
	if allocated > 32<<20 {
		t.Errorf("50 open GETs of a 10 MiB object allocated %.1f MiB; want a bounded window each, not a copy", float64(allocated)/(1<<20))
	}
	// And each still reads the whole object correctly.
	for _, b := range bodies {
		rest, err := io.ReadAll(b)
		if err != nil || !bytes.Equal(append(bytes.Clone(p), rest...), data) {
			t.Fatalf("streamed body differs (%d bytes, %v)", len(rest)+len(p), err)
		}
		b.Close()
	}
}

// TestGetOfReplacedObjectFails replaces or deletes an object while a GET of it is half
// read: the reader gets an error, never the new version's bytes after the old one's.
func TestGetOfReplacedObjectFails(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	oldData, newData := randBytes(6, 2<<20), randBytes(7, 2<<20)
	for _, change := range []string{"replace", "delete", "same"} {
		t.Run(change, func(t *testing.T) {
			put(t, s, "obj", "a/b", oldData)
			obj, err := s.Get(context.Background(), "obj")
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Body.Close()
			head := make([]byte, 1<<20)
			if _, err := io.ReadFull(obj.Body, head); err != nil {
				t.Fatal(err)
			}
			switch change {
			case "replace":
				put(t, s, "obj", "a/b", newData)
			case "delete":
				if err := s.Delete(context.Background(), "obj", storage.Condition{}); err != nil {
					t.Fatal(err)
				}
			case "same": // an identical PUT: the bytes still match what was verified
				put(t, s, "obj", "a/b", oldData)
			}
			rest, err := io.ReadAll(obj.Body)
			if change == "same" {
				if err != nil || !bytes.Equal(append(head, rest...), oldData) {
					t.Fatalf("after an identical PUT: %d bytes, %v", len(rest), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("after %s mid-transfer: read %d more bytes and no error", change, len(rest))
			}
			if !bytes.Equal(rest, oldData[len(head):len(head)+len(rest)]) {
				t.Fatalf("after %s mid-transfer: bytes of another version were returned", change)
			}
		})
	}
}

// TestConcurrentReadersAndWriters streams large objects while they are rewritten;
// every successful read is one whole version, byte for byte.
func TestConcurrentReadersAndWriters(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	versions := [][]byte{randBytes(8, 1<<20+5), randBytes(9, 700<<10), randBytes(10, 10)}
	put(t, s, "x", "t/t", versions[0])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			put(t, s, "x", "t/t", versions[i%len(versions)])
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 50 {
				b, info, err := get(s, "x")
				if err != nil {
					continue // replaced mid-transfer
				}
				if storage.ETag(b) != info.ETag {
					t.Errorf("read %d bytes that are not the version whose ETag was returned", len(b))
					return
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
}
