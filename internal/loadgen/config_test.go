package loadgen

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.Target != "http://localhost:5000" || c.Mode != ModeScenario || c.Concurrency != 8 ||
				c.Duration != 0 || c.MetricsAddress != ":9101" || c.MaxErrorRatio != 1 || c.Output != "text" {
				t.Errorf("unexpected defaults: %+v", c)
			}
			if c.Mix.String() != "put=1,get=3,head=1,delete=1" || c.Size != (SizeRange{1024, 1024}) {
				t.Errorf("mix %s size %v", c.Mix.String(), c.Size)
			}
		}},
		{
			name: "env sets every kind of flag",
			env: map[string]string{
				"LOADGEN_TARGET": "http://api:5000/", "LOADGEN_MODE": "rate", "LOADGEN_RATE": "12.5",
				"LOADGEN_DURATION": "3s", "LOADGEN_SIZE": "1k-2k", "LOADGEN_MIX": "get=1",
				"LOADGEN_MAX_ERROR_RATIO": "0.01", "LOADGEN_METRICS_ADDRESS": "127.0.0.1:0",
				"LOADGEN_READY_TIMEOUT": "1s",
			},
			check: func(t *testing.T, c Config) {
				if c.Target != "http://api:5000" || c.Mode != ModeRate || c.Rate != 12.5 || c.Duration != 3*time.Second ||
					c.Size != (SizeRange{1024, 2048}) || c.Mix.Weight("GET") != 1 || c.Mix.Weight("PUT") != 0 ||
					c.MaxErrorRatio != 0.01 || c.MetricsAddress != "127.0.0.1:0" || c.ReadyTimeout != time.Second {
					t.Errorf("env not applied: %+v", c)
				}
			},
		},
		{
			name: "flag wins over env",
			args: []string{"-concurrency", "3", "-output", "json"},
			env:  map[string]string{"LOADGEN_CONCURRENCY": "5", "LOADGEN_OUTPUT": "text", "LOADGEN_IDS": "7"},
			check: func(t *testing.T, c Config) {
				if c.Concurrency != 3 || c.Output != "json" || c.IDs != 7 {
					t.Errorf("got concurrency %d output %s ids %d", c.Concurrency, c.Output, c.IDs)
				}
			},
		},
		{name: "empty metrics address from flag disables", args: []string{"-metrics-address", ""},
			check: func(t *testing.T, c Config) {
				if c.MetricsAddress != "" {
					t.Errorf("metrics address %q", c.MetricsAddress)
				}
			}},
		{name: "trailing slashes trimmed", args: []string{"-target", "https://api.example//"},
			check: func(t *testing.T, c Config) {
				if c.Target != "https://api.example" {
					t.Errorf("target %q", c.Target)
				}
			}},
		{name: "bad mode", args: []string{"-mode", "soak"}, wantErr: "-mode"},
		{name: "zero rate in rate mode", args: []string{"-mode", "rate", "-rate", "0"}, wantErr: "-rate"},
		{name: "zero rate ignored in scenario mode", args: []string{"-rate", "0"}},
		{name: "bad target", args: []string{"-target", "localhost:5000"}, wantErr: "-target"},
		{name: "bad ratio", args: []string{"-max-error-ratio", "1.5"}, wantErr: "-max-error-ratio"},
		{name: "bad concurrency", args: []string{"-concurrency", "0"}, wantErr: "-concurrency"},
		{name: "negative duration", args: []string{"-duration", "-1s"}, wantErr: "-duration"},
		{name: "bad output", args: []string{"-output", "yaml"}, wantErr: "-output"},
		{name: "bad size", args: []string{"-size", "big"}, wantErr: "size"},
		{name: "bad env value", env: map[string]string{"LOADGEN_RATE": "fast"}, wantErr: "LOADGEN_RATE"},
		{name: "NaN rate", args: []string{"-mode", "rate", "-rate", "NaN"}, wantErr: "-rate=NaN: not a finite number"},
		{name: "infinite rate in env", env: map[string]string{"LOADGEN_MODE": "rate", "LOADGEN_RATE": "+Inf"}, wantErr: `LOADGEN_RATE="+Inf": not a finite number`},
		{name: "NaN error ratio in env", env: map[string]string{"LOADGEN_MAX_ERROR_RATIO": "nan"}, wantErr: `LOADGEN_MAX_ERROR_RATIO="nan": not a finite number`},
		{name: "unknown flag", args: []string{"-speed", "1"}, wantErr: "flag provided but not defined"},
		{name: "positional argument", args: []string{"extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			c, err := ParseConfig(tt.args, getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				if u := (*cli.UsageError)(nil); !errors.As(err, &u) {
					t.Errorf("err = %#v, not a cli.UsageError (loadgen would exit 1, not 2)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// Validate reports every problem at once and changes nothing (normalising is ParseConfig's).
func TestValidate(t *testing.T) {
	c := defaultConfig()
	c.Target, c.Mode, c.Rate, c.Concurrency, c.IDs, c.Output, c.Timeout = "ftp://x/", ModeRate, -1, 0, 0, "yaml", 0
	before := c
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted every bad value")
	}
	for _, want := range []string{"-target", "-rate", "-concurrency", "-ids", "-output", "-timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if c.Target != before.Target || c.Mode != before.Mode || c.Rate != before.Rate {
		t.Errorf("Validate changed the config: %+v, was %+v", c, before)
	}

	good := defaultConfig()
	good.Target = "http://api:5000/"
	if err := good.Validate(); err != nil || good.Target != "http://api:5000/" {
		t.Errorf("Validate(%q) = %v and left target %q; want nil, unchanged", "http://api:5000/", err, good.Target)
	}
}

func TestParseConfigHelp(t *testing.T) {
	var usage strings.Builder
	_, err := ParseConfig([]string{"-h"}, func(string) string { return "" }, &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-max-error-ratio", "LOADGEN_"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"target": "LOADGEN_TARGET", "max-error-ratio": "LOADGEN_MAX_ERROR_RATIO",
		"metrics-address": "LOADGEN_METRICS_ADDRESS", "ready-timeout": "LOADGEN_READY_TIMEOUT",
	} {
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}
