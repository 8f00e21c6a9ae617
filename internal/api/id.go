package api

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxIDBytes is the longest id accepted, counted after unescaping (as S3 limits keys).
const MaxIDBytes = 1024

// ValidateID checks an object id taken from the URL (already unescaped). Ids are
// otherwise opaque: any valid UTF-8, slashes (sent as %2F) included.
func ValidateID(id string) error {
	switch {
	case id == "":
		return errors.New("invalid id: empty")
	case len(id) > MaxIDBytes:
		return fmt.Errorf("invalid id: %d bytes, the limit is %d", len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		return errors.New("invalid id: not valid UTF-8")
	}
	return nil
}
