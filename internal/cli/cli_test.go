package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	refused := Usage(errors.New("-rate -1: want a rate in (0, 1e6]"))
	tests := []struct {
		name   string
		err    error
		want   int
		stderr string
	}{
		{"success", nil, ExitOK, ""},
		{"help", flag.ErrHelp, ExitOK, ""},
		{"help marked as usage stays help", Usage(flag.ErrHelp), ExitOK, ""},
		{"failure", errors.New("listen: address in use"), ExitFailure, "prog: listen: address in use\n"},
		{"usage", refused, ExitUsage, "prog: -rate -1: want a rate in (0, 1e6]\n"},
		{"usage wrapped", fmt.Errorf("config: %w", refused), ExitUsage, "prog: config: -rate -1: want a rate in (0, 1e6]\n"},
		{"every joined problem on its own line", Usage(errors.Join(errors.New("-a: bad"), errors.New("-b: bad"))), ExitUsage,
			"prog: -a: bad\nprog: -b: bad\n"},
		{"usage among joined errors", errors.Join(errors.New("x"), refused), ExitUsage, "prog: x\nprog: -rate -1: want a rate in (0, 1e6]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := ExitCode("prog", tt.err, &stderr); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	if Usage(nil) != nil {
		t.Error("Usage(nil) is not nil")
	}
	var u *UsageError
	if err := Usage(flag.ErrHelp); !errors.Is(err, flag.ErrHelp) || errors.As(err, &u) {
		t.Errorf("Usage(flag.ErrHelp) = %#v, want flag.ErrHelp, not a UsageError", err)
	}
	inner := errors.New("bad")
	once := Usage(inner)
	if !errors.As(once, &u) || !errors.Is(once, inner) || once.Error() != "bad" {
		t.Errorf("Usage(%v) = %#v: want a UsageError wrapping it, same message", inner, once)
	}
	var nested *UsageError
	if twice := Usage(once); !errors.As(twice, &u) || errors.As(u.Err, &nested) {
		t.Errorf("Usage of a UsageError wrapped it again: %#v", twice)
	}
}
