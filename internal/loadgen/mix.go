package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
)

// methods lists the request methods a Mix weighs, in canonical order.
var methods = [...]string{http.MethodPut, http.MethodGet, http.MethodHead, http.MethodDelete}

// maxWeight bounds one weight so that the total cannot overflow.
const maxWeight = 1_000_000

// Mix holds the relative weights of PUT, GET, HEAD and DELETE in rate mode.
// It is a flag.Value.
type Mix struct {
	weights [len(methods)]int
	total   int
}

// ParseMix parses "put=1,get=3,head=1,delete=1". Names are case-insensitive,
// omitted methods weigh 0, and at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	var seen [len(methods)]bool
	if strings.TrimSpace(s) == "" {
		return m, fmt.Errorf("empty mix")
	}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix entry %q: want method=weight", part)
		}
		name = strings.ToUpper(strings.TrimSpace(name))
		i := indexOf(name)
		if i < 0 {
			return Mix{}, fmt.Errorf("mix entry %q: unknown method (want put, get, head or delete)", part)
		}
		if seen[i] {
			return Mix{}, fmt.Errorf("mix: %s given twice", strings.ToLower(name))
		}
		seen[i] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 || w > maxWeight {
			return Mix{}, fmt.Errorf("mix entry %q: weight must be an integer 0..%d", part, maxWeight)
		}
		m.weights[i] = w
		m.total += w
	}
	if m.total == 0 {
		return Mix{}, fmt.Errorf("mix %q: all weights are 0", s)
	}
	return m, nil
}

// MustParseMix is ParseMix for constants.
func MustParseMix(s string) Mix {
	m, err := ParseMix(s)
	if err != nil {
		panic(err)
	}
	return m
}

func indexOf(method string) int {
	for i, m := range methods {
		if m == method {
			return i
		}
	}
	return -1
}

// Weight returns the weight of method (upper-case).
func (m Mix) Weight(method string) int {
	if i := indexOf(method); i >= 0 {
		return m.weights[i]
	}
	return 0
}

// Pick draws a method with probability proportional to its weight.
func (m Mix) Pick() string {
	n := rand.IntN(m.total)
	for i, w := range m.weights {
		if n < w {
			return methods[i]
		}
		n -= w
	}
	return methods[len(methods)-1] // unreachable while total is the sum of weights
}

// String returns the canonical form, which ParseMix accepts.
func (m *Mix) String() string {
	parts := make([]string, 0, len(methods))
	for i, w := range m.weights {
		parts = append(parts, strings.ToLower(methods[i])+"="+strconv.Itoa(w))
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value.
func (m *Mix) Set(s string) error {
	v, err := ParseMix(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}
