package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// MaxPayload bounds -size: the payload buffer is allocated once at this size
// at most, and the API rejects far smaller objects by default anyway.
const MaxPayload = 64 << 20

// SizeRange is an inclusive range of payload sizes in bytes. It is a
// flag.Value.
type SizeRange struct {
	Min, Max int64
}

// ParseSize parses "1024", "4k", "1MiB" or a range "512-4096". Suffixes are
// case-insensitive and binary: k, kb, kib mean 1024; m, mb, mib mean 1<<20.
func ParseSize(s string) (SizeRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parseBytes(lo)
	if err != nil {
		return SizeRange{}, err
	}
	b := a
	if isRange {
		if b, err = parseBytes(hi); err != nil {
			return SizeRange{}, err
		}
		if a > b {
			return SizeRange{}, fmt.Errorf("size range %q: minimum exceeds maximum", s)
		}
	}
	return SizeRange{Min: a, Max: b}, nil
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 || end > 9 { // more than 9 digits exceeds MaxPayload anyway
		return 0, fmt.Errorf("size %q: want a byte count like 1024, 4k or 1MiB", s)
	}
	n, err := strconv.ParseInt(s[:end], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(s[end:])) {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	default:
		return 0, fmt.Errorf("size %q: unknown unit (want b, k, kib, m or mib)", s)
	}
	if n > MaxPayload/mult {
		return 0, fmt.Errorf("size %q: larger than %d bytes", s, MaxPayload)
	}
	return n * mult, nil
}

// Pick draws a size uniformly from the range.
func (r SizeRange) Pick() int64 {
	if r.Max <= r.Min {
		return r.Min
	}
	return r.Min + rand.Int64N(r.Max-r.Min+1)
}

// String returns the canonical form, which ParseSize accepts.
func (r *SizeRange) String() string {
	if r.Min == r.Max {
		return strconv.FormatInt(r.Min, 10)
	}
	return strconv.FormatInt(r.Min, 10) + "-" + strconv.FormatInt(r.Max, 10)
}

// Set implements flag.Value.
func (r *SizeRange) Set(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}
