package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// maxConditionTags bounds the entity tags one precondition header may list: enough for
// any real client, small enough that evaluating them costs nothing.
const maxConditionTags = 64

// parseCondition reads a write's preconditions (RFC 9110 section 13.1): If-Match,
// compared strongly (a weak tag never matches), and If-None-Match, compared weakly (W/
// is ignored). Each is "*" or a list of quoted entity tags; several header lines are one
// list. A malformed header is an error (400), not a condition that silently never matches.
func parseCondition(h http.Header) (storage.Condition, error) {
	var c storage.Condition
	var err error
	if v, ok := h["If-Match"]; ok {
		if c.IfMatch, err = parseETagList(v, false); err != nil {
			return c, errors.New("invalid If-Match: " + err.Error())
		}
	}
	if v, ok := h["If-None-Match"]; ok {
		if c.IfNoneMatch, err = parseETagList(v, true); err != nil {
			return c, errors.New("invalid If-None-Match: " + err.Error())
		}
	}
	return c, nil
}

// parseETagList parses `"*"` or `1#entity-tag` from the header's lines and returns the
// opaque tags unquoted, or ["*"]. Weak tags are kept (without W/) when weak, dropped
// otherwise: for If-Match they can never match, so a list of weak tags only is an empty,
// non-nil list that always fails.
func parseETagList(lines []string, weak bool) ([]string, error) {
	tags := []string{}
	star := false
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue // empty list elements are allowed (RFC 9110 section 5.6.1)
			}
			if item == "*" {
				star = true
				continue
			}
			isWeak := strings.HasPrefix(item, "W/")
			opaque, ok := unquoteETag(strings.TrimPrefix(item, "W/"))
			if !ok {
				return nil, errors.New(`entity tags must be "*" or quoted, like "abc" or W/"abc"`)
			}
			if len(tags) == maxConditionTags {
				return nil, errors.New("too many entity tags")
			}
			// A quoted "*" is a tag, not the wildcard; no stored ETag (hex) equals it, and
			// keeping it would make storage.Condition read it as "any".
			if (!isWeak || weak) && opaque != "*" {
				tags = append(tags, opaque)
			}
		}
	}
	switch {
	case star && (len(tags) > 0 || len(lines) > 1):
		return nil, errors.New(`"*" cannot be combined with entity tags`)
	case star:
		return []string{"*"}, nil
	case len(tags) == 0 && !anyTag(lines):
		return nil, errors.New("empty")
	}
	return tags, nil
}

// anyTag reports whether the header lines hold anything but separators.
func anyTag(lines []string) bool {
	for _, l := range lines {
		if strings.Trim(l, ", \t") != "" {
			return true
		}
	}
	return false
}

// unquoteETag returns the opaque-tag of `"etagc*"` (etagc: visible ASCII but `"`, or
// obs-text).
func unquoteETag(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	s = s[1 : len(s)-1]
	for i := range len(s) {
		if c := s[i]; c == '"' || c < 0x21 || c == 0x7f {
			return "", false
		}
	}
	return s, true
}
