package envflag

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
)

type flags struct {
	s  string
	b  bool
	i  int
	n  int64
	f  float64
	d  time.Duration
	fs *FlagSet
}

func newFlags(out *bytes.Buffer) *flags {
	v := &flags{fs: New("prog", out)}
	v.fs.StringVar(&v.s, "name", "APP_NAME", "dflt", "a name")
	v.fs.BoolVar(&v.b, "verbose", "APP_VERBOSE", false, "talk more")
	v.fs.IntVar(&v.i, "count", "APP_COUNT", 1, "a count")
	v.fs.Int64Var(&v.n, "size", "APP_SIZE", 10, "a size")
	v.fs.Float64Var(&v.f, "ratio", "APP_RATIO", 0.5, "a ratio")
	v.fs.DurationVar(&v.d, "wait", "APP_WAIT", time.Second, "a wait")
	return v
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want flags
		set  []string // flags IsSet must report
	}{
		{name: "defaults", want: flags{s: "dflt", i: 1, n: 10, f: 0.5, d: time.Second}},
		{name: "env over default",
			env:  map[string]string{"APP_NAME": "e", "APP_VERBOSE": "true", "APP_COUNT": "2", "APP_SIZE": "20", "APP_RATIO": "0.25", "APP_WAIT": "2s"},
			want: flags{s: "e", b: true, i: 2, n: 20, f: 0.25, d: 2 * time.Second}},
		{name: "flag over env",
			args: []string{"-name", "f", "-verbose=false", "-count", "3", "-size=30", "-ratio", "1", "-wait", "3s"},
			env:  map[string]string{"APP_NAME": "e", "APP_VERBOSE": "true", "APP_COUNT": "2", "APP_SIZE": "20", "APP_RATIO": "0.25", "APP_WAIT": "2s"},
			want: flags{s: "f", b: false, i: 3, n: 30, f: 1, d: 3 * time.Second},
			set:  []string{"name", "verbose", "count", "size", "ratio", "wait"}},
		{name: "mixed", args: []string{"-count", "4"}, env: map[string]string{"APP_COUNT": "2", "APP_NAME": "e"},
			want: flags{s: "e", i: 4, n: 10, f: 0.5, d: time.Second}, set: []string{"count"}},
		{name: "empty variable is unset", env: map[string]string{"APP_NAME": ""},
			want: flags{s: "dflt", i: 1, n: 10, f: 0.5, d: time.Second}},
		{name: "flag set to its default still wins", args: []string{"-name", "dflt"}, env: map[string]string{"APP_NAME": "e"},
			want: flags{s: "dflt", i: 1, n: 10, f: 0.5, d: time.Second}, set: []string{"name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newFlags(&bytes.Buffer{})
			if err := v.fs.Parse(tt.args, func(k string) string { return tt.env[k] }); err != nil {
				t.Fatal(err)
			}
			got := flags{s: v.s, b: v.b, i: v.i, n: v.n, f: v.f, d: v.d}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			for _, name := range []string{"name", "verbose", "count", "size", "ratio", "wait"} {
				want := false
				for _, s := range tt.set {
					want = want || s == name
				}
				// IsSet means "given on the command line": a value from the environment is not.
				if v.fs.IsSet(name) != want {
					t.Errorf("IsSet(%q) = %v, want %v", name, !want, want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"positional argument", []string{"extra"}, nil, []string{"unexpected argument", "extra"}},
		{"positional after flags", []string{"-count", "2", "run"}, nil, []string{"unexpected argument", "run"}},
		{"argument after --", []string{"--", "-count"}, nil, []string{"unexpected argument", "-count"}},
		{"unknown flag", []string{"-nope"}, nil, []string{"nope"}},
		{"bad flag value", []string{"-count", "many"}, nil, []string{"count", "many"}},
		{"bad variable value names the variable", nil, map[string]string{"APP_WAIT": "later"}, []string{"APP_WAIT", "later"}},
		{"bad bool variable", nil, map[string]string{"APP_VERBOSE": "yes please"}, []string{"APP_VERBOSE"}},
		{"bad float variable", nil, map[string]string{"APP_RATIO": "half"}, []string{"APP_RATIO", "half"}},
		{"NaN flag", []string{"-ratio", "NaN"}, nil, []string{"-ratio", "not a finite number"}},
		{"infinite flag", []string{"-ratio=-Inf"}, nil, []string{"-ratio", "not a finite number"}},
		{"NaN variable", nil, map[string]string{"APP_RATIO": "nan"}, []string{"APP_RATIO", `"nan"`, "not a finite number"}},
		{"infinite variable", nil, map[string]string{"APP_RATIO": "Infinity"}, []string{"APP_RATIO", "not a finite number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newFlags(&bytes.Buffer{})
			err := v.fs.Parse(tt.args, func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatalf("Parse(%q, %v) succeeded", tt.args, tt.env)
			}
			// The binaries' exit status (2) depends on it.
			if u := (*cli.UsageError)(nil); !errors.As(err, &u) {
				t.Errorf("Parse(%q, %v) = %#v, not a cli.UsageError", tt.args, tt.env, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A bad value in a variable that the command line overrides is never looked at.
func TestFlagHidesBadVariable(t *testing.T) {
	v := newFlags(&bytes.Buffer{})
	if err := v.fs.Parse([]string{"-wait", "1ms"}, func(k string) string { return map[string]string{"APP_WAIT": "later"}[k] }); err != nil {
		t.Fatal(err)
	}
	if v.d != time.Millisecond {
		t.Errorf("wait = %v", v.d)
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	v := newFlags(&out)
	var plain bool
	v.fs.FlagSet.BoolVar(&plain, "plain", false, "a flag without a variable")
	err := v.fs.Parse([]string{"-h"}, func(string) string { return "" })
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v; want flag.ErrHelp", err)
	}
	usage := out.String()
	if !strings.HasPrefix(usage, "Usage of prog") {
		t.Errorf("usage does not start with the program name:\n%s", usage)
	}
	for name, env := range map[string]string{
		"name": "APP_NAME", "verbose": "APP_VERBOSE", "count": "APP_COUNT", "size": "APP_SIZE", "ratio": "APP_RATIO", "wait": "APP_WAIT",
	} {
		if got := v.fs.Env(name); got != env {
			t.Errorf("Env(%q) = %q, want %q", name, got, env)
		}
		// The variable is shown on the flag's own usage line, not merely somewhere.
		if !strings.Contains(flagUsage(usage, name), "(env "+env+")") {
			t.Errorf("usage of -%s does not show (env %s):\n%s", name, env, usage)
		}
	}
	if !strings.Contains(flagUsage(usage, "count"), "(default 1)") {
		t.Errorf("usage of -count does not show its default:\n%s", usage)
	}
	if strings.Contains(flagUsage(usage, "plain"), "(env") || v.fs.Env("plain") != "" {
		t.Errorf("-plain has no variable, but usage shows one:\n%s", usage)
	}
}

// flagUsage returns the lines PrintDefaults wrote for -name: its header line and the
// indented description below it.
func flagUsage(usage, name string) string {
	lines := strings.Split(usage, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  -"+name+" ") || l == "  -"+name {
			if i+1 < len(lines) {
				return l + "\n" + lines[i+1]
			}
			return l
		}
	}
	return ""
}
