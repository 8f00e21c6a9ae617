package api

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxIDBytes is the longest id accepted, counted after unescaping (as S3 limits keys).
const MaxIDBytes = 1024

const errDotSegments = `"." and ".." segments and empty segments are not allowed, escaped or not (a URL holding them is rewritten by URL cleaners)`

// ValidateID checks an object id taken from the URL (already unescaped). Ids are
// otherwise opaque: any valid UTF-8, slashes (sent as %2F) included, as long as the
// object's URL, /api/buckets/ + id, is a canonical path: no "." or ".." segment and no
// empty one but a final slash. Otherwise the Location of a new object would be a URL
// that ServeMux (and proxies) rewrite to another object's.
func ValidateID(id string) error {
	switch {
	case id == "":
		return errors.New("invalid id: empty")
	case len(id) > MaxIDBytes:
		return fmt.Errorf("invalid id: %d bytes, the limit is %d", len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		return errors.New("invalid id: not valid UTF-8")
	case !canonicalPath("/" + id):
		return errors.New("invalid id: " + errDotSegments)
	}
	return nil
}
