package bolt

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrCheckFailed is Check's error when the file has bad records or pages.
var ErrCheckFailed = errors.New("check failed")

// CheckReport is what Check found.
type CheckReport struct {
	Records int64 // records verified, bad ones included
	Bytes   int64 // data bytes of the good ones
	Bad     int   // records that failed verification (and data without a record)
	V1      int64 // good records still in formatV1 (rewritten by their next PUT)
	Pages   int   // errors from bbolt's own page check
	// The totals kept in the file for the storage_objects and storage_bytes gauges.
	StoredObjects, StoredBytes int64
}

// Check is the offline scrub behind `storage-api check`: it opens the file at path
// read-only (so it fails at once, after 2s, while a server holds the file), runs bbolt's
// own page check, verifies every record and its data exactly as a GET would, and writes
// one line per problem, then a summary, to w. The error is ErrCheckFailed when anything
// is bad.
func Check(path string, w io.Writer) (CheckReport, error) {
	var rep CheckReport
	if _, err := os.Stat(path); err != nil {
		return rep, err
	}
	if err := checkFile(path); err != nil {
		return rep, err
	}
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return rep, fmt.Errorf("%s is locked by another process (a running server?): stop it, or check a copy", path)
	}
	if err != nil {
		return rep, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) (err error) {
		defer func() {
			if p := recover(); p != nil {
				rep.Pages++
				fmt.Fprintf(w, "page\tbbolt panicked walking the file: %v\n", p)
			}
		}()
		for err := range tx.Check() {
			rep.Pages++
			fmt.Fprintf(w, "page\t%v\n", err)
		}
		objects, chunks, meta := tx.Bucket(objectsBucket), tx.Bucket(chunksBucket), tx.Bucket(metaBucket)
		if objects == nil || chunks == nil || meta == nil {
			return errors.New("not a storage-api database: bucket objects, chunks or meta missing")
		}
		c := objects.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			rep.Records++
			id := string(k)
			r, inline, err := lookup(tx, id)
			if err == nil {
				err = r.verify(tx, id, inline)
			}
			if err != nil {
				rep.Bad++
				fmt.Fprintf(w, "bad\t%q\t%v\n", k, err)
				continue
			}
			rep.Bytes += r.info.Size
			if r.version == formatV1 {
				rep.V1++
			}
		}
		// Chunks that no record accounts for: of an id without a record, or beyond its
		// record's last chunk. One line per id.
		reported := map[string]bool{}
		var lastID string
		var lastChunks int // chunks of lastID's record; -1: no usable record
		cc := chunks.Cursor()
		for k, _ := cc.First(); k != nil; k, _ = cc.Next() {
			id, i, ok := parseChunkKey(k)
			if !ok {
				rep.Bad++
				fmt.Fprintf(w, "bad\t%q\tnot a chunk key\n", k)
				continue
			}
			if id != lastID || lastID == "" {
				lastID, lastChunks = id, -1
				if v := objects.Get([]byte(id)); v != nil {
					lastChunks = 0
					if r, _, err := parseRecord(id, v); err == nil && !r.inline {
						lastChunks = r.chunks()
					} else if err != nil {
						lastChunks = math.MaxInt // a bad record is reported above
					}
				}
			}
			if i >= lastChunks && !reported[id] {
				reported[id] = true
				rep.Bad++
				if lastChunks < 0 {
					fmt.Fprintf(w, "bad\t%q\tdata without a record (an orphan; DELETE of the id removes it)\n", id)
				} else {
					fmt.Fprintf(w, "bad\t%q\tchunk %d beyond the record's %d (a PUT or DELETE of the id removes it)\n", id, i, lastChunks)
				}
			}
		}
		rep.StoredObjects, rep.StoredBytes = readInt(meta, countKey), readInt(meta, bytesKey)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(w, "%s: %d records, %d bad, %d bytes in good records, %d still in format v1, %d page errors\n",
		path, rep.Records, rep.Bad, rep.Bytes, rep.V1, rep.Pages)
	if rep.StoredObjects != rep.Records || (rep.Bad == 0 && rep.StoredBytes != rep.Bytes) {
		// Not a failure: the totals only feed the storage_objects/storage_bytes gauges, and
		// the repair of a record whose header was lost cannot always know its old size.
		fmt.Fprintf(w, "note: the stored totals (%d objects, %d bytes) differ from what was counted\n", rep.StoredObjects, rep.StoredBytes)
	}
	if rep.Bad > 0 || rep.Pages > 0 {
		return rep, ErrCheckFailed
	}
	return rep, nil
}
