package loadgen

import (
	"testing"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]int // nil: error expected
	}{
		{"put=1,get=3,head=1,delete=1", map[string]int{"PUT": 1, "GET": 3, "HEAD": 1, "DELETE": 1}},
		{" GET = 2 , Put=0 ", map[string]int{"GET": 2}},
		{"delete=5", map[string]int{"DELETE": 5}},
		{"head=1000000", map[string]int{"HEAD": 1000000}},
		{"", nil},
		{"get", nil},
		{"get=", nil},
		{"get=-1", nil},
		{"get=1.5", nil},
		{"get=1000001", nil},
		{"post=1", nil},
		{"get=1,get=2", nil},
		{"get=0,put=0", nil},
		{"get=1,", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMix(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseMix(%q) = %s, want error", tt.in, m.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, method := range methods {
				if got := m.Weight(method); got != tt.want[method] {
					t.Errorf("weight of %s = %d, want %d", method, got, tt.want[method])
				}
			}
		})
	}
}

func TestMixPickFollowsWeights(t *testing.T) {
	m := MustParseMix("get=1,delete=0,put=3")
	counts := map[string]int{}
	for range 4000 {
		counts[m.Pick()]++
	}
	if counts["DELETE"] != 0 || counts["HEAD"] != 0 {
		t.Errorf("zero-weight methods picked: %v", counts)
	}
	// Expect PUT 3000 ± a wide margin; the draw is random.
	if counts["PUT"] < 2700 || counts["PUT"] > 3300 {
		t.Errorf("PUT picked %d of 4000 times, want about 3000", counts["PUT"])
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in       string
		min, max int64
		ok       bool
	}{
		{"1024", 1024, 1024, true},
		{"0", 0, 0, true},
		{"512-4096", 512, 4096, true},
		{"4k", 4096, 4096, true},
		{"4K", 4096, 4096, true},
		{"4KiB", 4096, 4096, true},
		{"4kb", 4096, 4096, true},
		{"1MiB", 1 << 20, 1 << 20, true},
		{"1m-2m", 1 << 20, 2 << 20, true},
		{"10b", 10, 10, true},
		{" 1k - 2k ", 1024, 2048, true},
		{"64MiB", 64 << 20, 64 << 20, true},
		{"65MiB", 0, 0, false},
		{"4096-512", 0, 0, false},
		{"", 0, 0, false},
		{"-5", 0, 0, false},
		{"5-", 0, 0, false},
		{"1-2-3", 0, 0, false},
		{"1.5k", 0, 0, false},
		{"4g", 0, 0, false},
		{"k", 0, 0, false},
		{"99999999999999999999", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseSize(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("ParseSize(%q) = %+v, want error", tt.in, r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Min != tt.min || r.Max != tt.max {
				t.Errorf("ParseSize(%q) = %+v, want %d-%d", tt.in, r, tt.min, tt.max)
			}
			for range 50 {
				if n := r.Pick(); n < r.Min || n > r.Max {
					t.Fatalf("Pick() = %d outside %+v", n, r)
				}
			}
		})
	}
}

// FuzzParseMix checks that whatever parses is usable and survives a round
// trip through its canonical form.
func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"put=1,get=3,head=1,delete=1", "GET=2", "get=1,get=2", "", "=,=", "head=0,put=1000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err != nil {
			return
		}
		if m.total <= 0 {
			t.Fatalf("ParseMix(%q) accepted a zero total", s)
		}
		again, err := ParseMix(m.String())
		if err != nil || again != m {
			t.Fatalf("round trip of %q via %q: %v, %+v != %+v", s, m.String(), err, again, m)
		}
		if w := m.Weight(m.Pick()); w <= 0 {
			t.Fatalf("Pick() chose a method of weight %d", w)
		}
	})
}

// FuzzParseSize checks the bounds of whatever parses and the round trip.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1024", "512-4096", "4KiB", "1m-2m", "-", "9999999999k", "0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSize(s)
		if err != nil {
			return
		}
		if r.Min < 0 || r.Min > r.Max || r.Max > MaxPayload {
			t.Fatalf("ParseSize(%q) = %+v out of bounds", s, r)
		}
		again, err := ParseSize(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q via %q: %v, %+v", s, r.String(), err, again)
		}
	})
}
