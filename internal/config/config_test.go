package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
)

// env returns a getenv over a fixed map, so the tests never see the real environment.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ListenAddress:     ":5000",
		Storage:           "bolt",
		DataDir:           "./data",
		MaxObjectSize:     10 << 20,
		LogLevel:          slog.LevelInfo,
		AccessLog:         true,
		Metrics:           true,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ShutdownTimeout:   20 * time.Second,
		MaxInflightBytes:  64 << 20,
		MinTransferRate:   32 << 10,
		TransferGrace:     5 * time.Second,
	}
	if c != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if u, err := c.HealthcheckURL(); err != nil || u != "http://127.0.0.1:5000/healthz" {
		t.Errorf("HealthcheckURL() = %q, %v", u, err)
	}
}

func TestParsePrecedence(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(Config) bool
		want  string
	}{
		{"env overrides default", nil, map[string]string{"STORAGE_BACKEND": "memory"},
			func(c Config) bool { return c.Storage == "memory" }, "Storage memory"},
		{"flag overrides env", []string{"-storage", "bolt"}, map[string]string{"STORAGE_BACKEND": "memory"},
			func(c Config) bool { return c.Storage == "bolt" }, "Storage bolt"},
		{"env size", nil, map[string]string{"MAX_OBJECT_SIZE": "1024"},
			func(c Config) bool { return c.MaxObjectSize == 1024 }, "MaxObjectSize 1024"},
		{"env bool false", nil, map[string]string{"ACCESS_LOG": "false", "METRICS_ENABLED": "0"},
			func(c Config) bool { return !c.AccessLog && !c.Metrics }, "AccessLog and Metrics off"},
		{"flag bool beats env", []string{"-access-log=true"}, map[string]string{"ACCESS_LOG": "false"},
			func(c Config) bool { return c.AccessLog }, "AccessLog on"},
		{"env duration", nil, map[string]string{"SHUTDOWN_TIMEOUT": "3s", "SHUTDOWN_DELAY": "250ms"},
			func(c Config) bool {
				return c.ShutdownTimeout == 3*time.Second && c.ShutdownDelay == 250*time.Millisecond
			},
			"ShutdownTimeout 3s, ShutdownDelay 250ms"},
		{"env log level", nil, map[string]string{"LOG_LEVEL": "debug"},
			func(c Config) bool { return c.LogLevel == slog.LevelDebug }, "LogLevel debug"},
		{"empty env is unset", nil, map[string]string{"DATA_DIR": ""},
			func(c Config) bool { return c.DataDir == "./data" }, "DataDir ./data"},
		{"faults from env", nil, map[string]string{"FAULT_ERROR_RATIO": "0.5", "FAULT_LATENCY": "300ms", "FAULT_LATENCY_RATIO": "1"},
			func(c Config) bool {
				return c.Fault.ErrorRatio == 0.5 && c.Fault.Latency == 300*time.Millisecond && c.Fault.LatencyRatio == 1
			}, "faults 0.5, 300ms, 1"},
		{"s3 from env", nil, map[string]string{"STORAGE_BACKEND": "s3", "S3_BUCKET": "b", "S3_PREFIX": "p/", "S3_PATH_STYLE": "true"},
			func(c Config) bool { return c.S3 == S3{Bucket: "b", Prefix: "p/", PathStyle: true} }, "S3 {b p/ path-style}"},
		{"PORT means :N", nil, map[string]string{"PORT": "8080"},
			func(c Config) bool { return c.ListenAddress == ":8080" }, "ListenAddress :8080"},
		{"flag beats PORT", []string{"-listen-address", "127.0.0.1:9000"}, map[string]string{"PORT": "8080"},
			func(c Config) bool { return c.ListenAddress == "127.0.0.1:9000" }, "ListenAddress 127.0.0.1:9000"},
		{"LISTEN_ADDRESS beats PORT", nil, map[string]string{"PORT": "8080", "LISTEN_ADDRESS": "127.0.0.1:9000"},
			func(c Config) bool { return c.ListenAddress == "127.0.0.1:9000" }, "ListenAddress 127.0.0.1:9000"},
		{"flag beats LISTEN_ADDRESS", []string{"-listen-address=:7000"}, map[string]string{"LISTEN_ADDRESS": ":9000"},
			func(c Config) bool { return c.ListenAddress == ":7000" }, "ListenAddress :7000"},
		{"debug address off by default", nil, nil,
			func(c Config) bool { return c.DebugAddress == "" }, "DebugAddress empty"},
		{"debug address port only is loopback", nil, map[string]string{"DEBUG_ADDRESS": ":6060"},
			func(c Config) bool { return c.DebugAddress == "127.0.0.1:6060" }, "DebugAddress 127.0.0.1:6060"},
		{"debug address bare port is loopback", []string{"-debug-address", "6060"}, nil,
			func(c Config) bool { return c.DebugAddress == "127.0.0.1:6060" }, "DebugAddress 127.0.0.1:6060"},
		{"debug address explicit host kept", []string{"-debug-address", "0.0.0.0:6060"}, nil,
			func(c Config) bool { return c.DebugAddress == "0.0.0.0:6060" }, "DebugAddress 0.0.0.0:6060"},
		{"healthcheck and version flags", []string{"-healthcheck", "-version"}, nil,
			func(c Config) bool { return c.Healthcheck && c.Version }, "Healthcheck and Version set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, env(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("Parse(%q, %v): %v", tt.args, tt.env, err)
			}
			if !tt.check(c) {
				t.Errorf("Parse(%q, %v) = %+v; want %s", tt.args, tt.env, c, tt.want)
			}
		})
	}
}

func TestParseHealthcheckURLFollowsPort(t *testing.T) {
	c, err := Parse([]string{"-healthcheck"}, env(map[string]string{"PORT": "8081"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.HealthcheckURL(); err != nil || u != "http://127.0.0.1:8081/healthz" {
		t.Errorf("HealthcheckURL() = %q, %v; want http://127.0.0.1:8081/healthz", u, err)
	}
}

func TestHealthcheckURL(t *testing.T) {
	tests := []struct{ listen, want string }{
		{":5000", "http://127.0.0.1:5000/healthz"},
		{"0.0.0.0:5000", "http://127.0.0.1:5000/healthz"},
		{"[::]:5000", "http://[::1]:5000/healthz"},
		{"127.0.0.2:5000", "http://127.0.0.2:5000/healthz"},
		{"10.1.2.3:80", "http://10.1.2.3:80/healthz"},
		{"[::1]:5000", "http://[::1]:5000/healthz"},
		{"[fe80::1%eth0]:5000", "http://[fe80::1%25eth0]:5000/healthz"},
		{"localhost:5000", "http://localhost:5000/healthz"},
	}
	for _, tt := range tests {
		got, err := (Config{ListenAddress: tt.listen}).HealthcheckURL()
		if err != nil || got != tt.want {
			t.Errorf("HealthcheckURL(%q) = %q, %v; want %q", tt.listen, got, err, tt.want)
		}
		if _, err := url.Parse(got); err != nil {
			t.Errorf("HealthcheckURL(%q) = %q: %v", tt.listen, got, err)
		}
	}
}

// Every invalid value is an error that names what to fix: the flag, or the variable
// when the value came from the environment.
func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"debug address on the API port", []string{"-debug-address", ":5000"}, nil, []string{"-debug-address", "API"}},
		{"bad backend flag", []string{"-storage", "floppy"}, nil, []string{"-storage", "floppy"}},
		{"bad backend env", nil, map[string]string{"STORAGE_BACKEND": "floppy"}, []string{"-storage", "floppy"}},
		{"negative size", []string{"-max-object-size", "-1"}, nil, []string{"-max-object-size"}},
		{"zero size", []string{"-max-object-size=0"}, nil, []string{"-max-object-size"}},
		{"size not a number in env", nil, map[string]string{"MAX_OBJECT_SIZE": "10MB"}, []string{"MAX_OBJECT_SIZE"}},
		{"size not a number flag", []string{"-max-object-size", "10MB"}, nil, []string{"-max-object-size"}},
		{"error ratio over 1", []string{"-fault-error-ratio", "1.5"}, nil, []string{"-fault-error-ratio", "1.5"}},
		{"latency ratio over 1", nil, map[string]string{"FAULT_LATENCY_RATIO": "2"}, []string{"FAULT_LATENCY_RATIO", "2"}},
		{"negative latency", []string{"-fault-latency", "-1s"}, nil, []string{"latency", "-1s"}},
		{"bad duration in env", nil, map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, []string{"SHUTDOWN_TIMEOUT", "soon"}},
		{"bad duration flag", []string{"-read-timeout", "5"}, nil, []string{"-read-timeout"}},
		{"zero timeout", []string{"-write-timeout", "0s"}, nil, []string{"-write-timeout"}},
		{"negative shutdown delay", nil, map[string]string{"SHUTDOWN_DELAY": "-1s"}, []string{"-shutdown-delay"}},
		{"bad bool in env", nil, map[string]string{"ACCESS_LOG": "maybe"}, []string{"ACCESS_LOG", "maybe"}},
		{"s3 without bucket", []string{"-storage", "s3"}, nil, []string{"-s3-bucket", "S3_BUCKET"}},
		{"bolt without data dir", []string{"-data-dir="}, nil, []string{"-data-dir"}},
		{"PORT not a number", nil, map[string]string{"PORT": "http"}, []string{"PORT", "http"}},
		{"PORT too large", nil, map[string]string{"PORT": "70000"}, []string{"PORT", "70000"}},
		{"listen address without port", []string{"-listen-address", "localhost"}, nil, []string{"-listen-address", "localhost"}},
		{"bad log level", nil, map[string]string{"LOG_LEVEL": "loud"}, []string{"log-level", "loud"}},
		{"max header bytes", []string{"-max-header-bytes", "0"}, nil, []string{"-max-header-bytes"}},
		{"budget below object size", []string{"-max-inflight-bytes", "1048576"}, nil, []string{"-max-inflight-bytes", "-max-object-size"}},
		{"negative connections", nil, map[string]string{"MAX_CONNECTIONS": "-1"}, []string{"-max-connections"}},
		{"negative transfer rate", []string{"-min-transfer-rate", "-5"}, nil, []string{"-min-transfer-rate"}},
		{"rate without grace", []string{"-transfer-grace", "0s"}, nil, []string{"-transfer-grace"}},
		{"negative memory limit", nil, map[string]string{"MEMORY_LIMIT": "-1"}, []string{"-memory-limit"}},
		{"unknown flag", []string{"-colour"}, nil, []string{"colour"}},
		{"positional argument", []string{"serve"}, nil, []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("Parse(%q, %v) succeeded; want an error", tt.args, tt.env)
			}
			if u := (*cli.UsageError)(nil); !errors.As(err, &u) {
				t.Errorf("Parse(%q, %v) = %#v, not a cli.UsageError (storage-api would exit 1, not 2)", tt.args, tt.env, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q, %v) error %q does not mention %q", tt.args, tt.env, err, w)
				}
			}
		})
	}
}

// Parse reports every problem at once, not only the first: Validate's and its own (PORT, the log level).
func TestParseReportsAllProblems(t *testing.T) {
	_, err := Parse([]string{"-storage", "floppy", "-max-object-size", "-5", "-shutdown-timeout", "0s", "-fault-error-ratio", "2", "-fault-latency", "-1s"},
		env(map[string]string{"PORT": "http", "LOG_LEVEL": "loud"}), &bytes.Buffer{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{"-storage", "-max-object-size", "-shutdown-timeout", "-fault-error-ratio", "-fault-latency ", "PORT", "-log-level"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func TestParseHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse([]string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v; want flag.ErrHelp", err)
	}
	usage := out.String()
	// Every flag with a variable shows it; the two actions (-healthcheck, -version) have none.
	for _, v := range []string{
		"LISTEN_ADDRESS", "PORT", "STORAGE_BACKEND", "DATA_DIR", "MAX_OBJECT_SIZE", "LOG_LEVEL", "ACCESS_LOG",
		"METRICS_ENABLED", "SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT", "FAULT_ERROR_RATIO", "FAULT_LATENCY",
		"FAULT_LATENCY_RATIO", "S3_BUCKET", "S3_PREFIX", "S3_ENDPOINT", "S3_REGION", "S3_PATH_STYLE",
		"-healthcheck", "-version",
	} {
		if !strings.Contains(usage, v) {
			t.Errorf("usage does not mention %s:\n%s", v, usage)
		}
	}
}
