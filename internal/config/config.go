// Package config parses storage-api's flags. Every flag has an environment variable;
// an explicit flag wins over the variable, which wins over the default.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
	"github.com/sre-instrumentation/storage-api/internal/envflag"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// Config is storage-api's configuration.
type Config struct {
	ListenAddress string
	// DebugAddress serves net/http/pprof on a listener of its own; empty: off.
	DebugAddress  string
	Storage       string // bolt, memory or s3
	DataDir       string
	MaxObjectSize int64
	LogLevel      slog.Level
	AccessLog     bool
	Metrics       bool

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// ShutdownDelay keeps serving, with readiness failing, before the listener closes, so
	// load balancers see the pod leave before connections are refused.
	ShutdownDelay   time.Duration
	ShutdownTimeout time.Duration

	// Admission control (internal/admission, docs/reliability.md).
	MaxInflightBytes int64
	MaxConnections   int // 0: derived from the file descriptor limit
	MinTransferRate  int64
	TransferGrace    time.Duration
	// MemoryLimit is the container's memory limit in bytes; the Go runtime's soft limit
	// is set to 80% of it unless GOMEMLIMIT is set. 0: none.
	MemoryLimit int64

	Fault fault.Config
	S3    S3

	Healthcheck bool
	Version     bool
}

// S3 configures the s3 backend. Credentials come from the standard AWS chain.
type S3 struct {
	Bucket    string
	Prefix    string
	Endpoint  string
	Region    string
	PathStyle bool
	// ConditionalWrites: the service applies conditional writes atomically (s3.Config).
	ConditionalWrites bool
}

// Backends are the accepted -storage values.
var Backends = []string{"bolt", "memory", "s3"}

// DefaultMaxObjectSize is -max-object-size's default: 10 MiB.
const DefaultMaxObjectSize = 10 << 20

// Parse parses args (without the program name) and the environment, normalises what has
// more than one spelling (PORT, a bare -debug-address port) and validates the result. Every
// problem is reported at once, as a cli.UsageError; -h returns flag.ErrHelp, the usage
// printed to output.
func Parse(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	var c Config
	fs := envflag.New("storage-api", output)
	fs.Footer = tracing.EnvHelp
	fs.StringVar(&c.ListenAddress, "listen-address", "LISTEN_ADDRESS", ":5000", "address to listen on (env PORT=N also works, meaning :N)")
	fs.StringVar(&c.DebugAddress, "debug-address", "DEBUG_ADDRESS", "", "address of a separate listener serving /debug/pprof/ (never on the API port); a bare port or :port binds 127.0.0.1; empty: off")
	fs.StringVar(&c.Storage, "storage", "STORAGE_BACKEND", "bolt", "storage backend: "+strings.Join(Backends, ", "))
	fs.StringVar(&c.DataDir, "data-dir", "DATA_DIR", "./data", "bolt: directory of the database file (created if missing)")
	fs.Int64Var(&c.MaxObjectSize, "max-object-size", "MAX_OBJECT_SIZE", DefaultMaxObjectSize, "largest object accepted, in bytes")
	logLevel := fs.String("log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.AccessLog, "access-log", "ACCESS_LOG", true, "log one line per request")
	fs.BoolVar(&c.Metrics, "metrics", "METRICS_ENABLED", true, "record request and storage metrics (false only to measure their overhead; /metrics still serves the runtime and build metrics)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", "READ_HEADER_TIMEOUT", 5*time.Second, "time allowed to read request headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", 60*time.Second, "time allowed to read a whole request, body included")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", 60*time.Second, "time allowed to write a response")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", 120*time.Second, "how long an idle keep-alive connection stays open")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", "MAX_HEADER_BYTES", 64<<10, "largest request header accepted, in bytes")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", "SHUTDOWN_DELAY", 0, "on SIGTERM, keep serving this long with /readyz failing before closing the listener (set it in Kubernetes, e.g. 5s)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 20*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.Int64Var(&c.MaxInflightBytes, "max-inflight-bytes", "MAX_INFLIGHT_BYTES", 64<<20, "memory budget for request and response bodies in flight, in bytes; a request that does not fit gets 503 with Retry-After before its body is read")
	fs.IntVar(&c.MaxConnections, "max-connections", "MAX_CONNECTIONS", 0, "open connections before idle ones are closed and new requests get 503 (16 more are kept for /healthz, /readyz and /metrics); 0: min(1024, file descriptor limit - 96)")
	fs.Int64Var(&c.MinTransferRate, "min-transfer-rate", "MIN_TRANSFER_RATE", 32<<10, "slowest average rate, in bytes/s, at which a request or response body may move once -transfer-grace has passed; 0 turns the check off")
	fs.DurationVar(&c.TransferGrace, "transfer-grace", "TRANSFER_GRACE", 5*time.Second, "how long a body may move no byte at all, and how long before -min-transfer-rate applies")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", "MEMORY_LIMIT", 0, "the container's memory limit in bytes (Kubernetes: the downward API); sets the Go soft memory limit to 80% of it unless GOMEMLIMIT is set; 0: none")
	fs.Float64Var(&c.Fault.ErrorRatio, "fault-error-ratio", "FAULT_ERROR_RATIO", 0, "fraction (0..1) of /api requests to fail with 503, on purpose")
	fs.DurationVar(&c.Fault.Latency, "fault-latency", "FAULT_LATENCY", 0, "delay to add to a fraction of /api requests, on purpose")
	fs.Float64Var(&c.Fault.LatencyRatio, "fault-latency-ratio", "FAULT_LATENCY_RATIO", 0, "fraction (0..1) of /api requests that get -fault-latency")
	fs.StringVar(&c.S3.Bucket, "s3-bucket", "S3_BUCKET", "", "s3: bucket name (required with -storage s3)")
	fs.StringVar(&c.S3.Prefix, "s3-prefix", "S3_PREFIX", "", "s3: key prefix for objects")
	fs.StringVar(&c.S3.Endpoint, "s3-endpoint", "S3_ENDPOINT", "", "s3: endpoint URL (default: AWS_ENDPOINT_URL, else AWS)")
	fs.StringVar(&c.S3.Region, "s3-region", "S3_REGION", "", "s3: region (default: AWS_REGION / AWS config)")
	fs.BoolVar(&c.S3.PathStyle, "s3-path-style", "S3_PATH_STYLE", false, "s3: path-style addressing (MinIO, versitygw and most self-hosted servers need it)")
	fs.BoolVar(&c.S3.ConditionalWrites, "s3-conditional-writes", "S3_CONDITIONAL_WRITES", false, "s3: the service applies If-Match/If-None-Match atomically with the write (AWS S3 does; versitygw v1.8.0 does not): only then are the API's If-Match/If-None-Match on PUT and DELETE enforced, else refused with 501")
	fs.FlagSet.BoolVar(&c.Healthcheck, "healthcheck", false, "check /healthz on the listen address (loopback when it is all interfaces) and exit 0 if it answers 200 within 2s (for container HEALTHCHECK)")
	fs.FlagSet.BoolVar(&c.Version, "version", false, "print version and exit")

	if err := fs.Parse(args, getenv); err != nil {
		return c, err
	}
	var errs []error
	// PORT is the original service's variable; LISTEN_ADDRESS or the flag win over it.
	if !fs.IsSet("listen-address") && getenv("LISTEN_ADDRESS") == "" {
		if port := getenv("PORT"); port != "" {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				errs = append(errs, fmt.Errorf("PORT=%q: not a port number", port))
			} else {
				c.ListenAddress = ":" + port
			}
		}
	}
	if c.DebugAddress != "" && !strings.Contains(c.DebugAddress, ":") {
		c.DebugAddress = ":" + c.DebugAddress // a bare port
	}
	if strings.HasPrefix(c.DebugAddress, ":") {
		// Profiles reveal internals: loopback unless a host is asked for explicitly.
		c.DebugAddress = "127.0.0.1" + c.DebugAddress
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	errs = append(errs, c.Validate())
	return c, cli.Usage(errors.Join(errs...))
}

// Validate checks the values that parsing alone does not, reporting every problem at once
// (errors.Join). It changes nothing: normalising is Parse's.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		errs = append(errs, fmt.Errorf("-listen-address %q: %w", c.ListenAddress, err))
	}
	if c.DebugAddress != "" {
		_, dport, err := net.SplitHostPort(c.DebugAddress)
		_, lport, _ := net.SplitHostPort(c.ListenAddress)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("-debug-address %q: %w", c.DebugAddress, err))
		case dport == lport && dport != "0":
			errs = append(errs, fmt.Errorf("-debug-address %q: must not be the API's port", c.DebugAddress))
		}
	}
	switch c.Storage {
	case "bolt":
		if c.DataDir == "" {
			errs = append(errs, errors.New("-data-dir must be set for the bolt backend"))
		}
	case "memory":
	case "s3":
		if c.S3.Bucket == "" {
			errs = append(errs, errors.New("-s3-bucket (S3_BUCKET) must be set for the s3 backend"))
		}
	default:
		errs = append(errs, fmt.Errorf("-storage %q: must be one of %s", c.Storage, strings.Join(Backends, ", ")))
	}
	if c.MaxObjectSize <= 0 {
		errs = append(errs, fmt.Errorf("-max-object-size %d: must be positive", c.MaxObjectSize))
	}
	if c.MaxHeaderBytes <= 0 {
		errs = append(errs, fmt.Errorf("-max-header-bytes %d: must be positive", c.MaxHeaderBytes))
	}
	for name, d := range map[string]time.Duration{
		"-read-header-timeout": c.ReadHeaderTimeout, "-read-timeout": c.ReadTimeout, "-write-timeout": c.WriteTimeout,
		"-idle-timeout": c.IdleTimeout, "-shutdown-timeout": c.ShutdownTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", name, d))
		}
	}
	if c.MaxInflightBytes < c.MaxObjectSize {
		errs = append(errs, fmt.Errorf("-max-inflight-bytes %d: must be at least -max-object-size (%d), or the largest objects could never be admitted", c.MaxInflightBytes, c.MaxObjectSize))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("-max-connections %d: must not be negative", c.MaxConnections))
	}
	if c.MinTransferRate < 0 {
		errs = append(errs, fmt.Errorf("-min-transfer-rate %d: must not be negative", c.MinTransferRate))
	}
	if c.MinTransferRate > 0 && c.TransferGrace <= 0 {
		errs = append(errs, fmt.Errorf("-transfer-grace %v: must be positive while -min-transfer-rate is on", c.TransferGrace))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("-memory-limit %d: must not be negative", c.MemoryLimit))
	}
	if c.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("-shutdown-delay %v: must not be negative", c.ShutdownDelay))
	}
	if err := c.Fault.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// HealthcheckURL is the /healthz URL of the server this configuration starts: the
// listen host when it is a specific address or name, else (empty, 0.0.0.0, ::, all
// interfaces) the loopback address of that family.
func (c Config) HealthcheckURL() (string, error) {
	host, port, err := net.SplitHostPort(c.ListenAddress)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	// An IPv6 zone (fe80::1%eth0) is written %25 in a URL (RFC 6874).
	return "http://" + net.JoinHostPort(strings.Replace(host, "%", "%25", 1), port) + "/healthz", nil
}
