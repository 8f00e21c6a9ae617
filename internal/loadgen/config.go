// Package loadgen drives the storage API with traffic: a closed "scenario"
// model like the original curl script, or an open constant-rate model whose
// latencies are measured from the scheduled send time.
package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
	"github.com/sre-instrumentation/storage-api/internal/envflag"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// Modes.
const (
	ModeScenario = "scenario"
	// ModeScript is scenario with the original script's ids: task i uses id i mod ids.
	ModeScript = "script"
	ModeRate   = "rate"
)

// Config is the validated configuration of one run.
type Config struct {
	Target         string
	Mode           string
	Rate           float64
	Concurrency    int
	MaxConcurrency int
	Duration       time.Duration
	IDs            int
	Size           SizeRange
	Mix            Mix
	Think          time.Duration
	MaxErrorRatio  float64
	Output         string
	MetricsAddress string
	ReadyTimeout   time.Duration
	Timeout        time.Duration
	// Getenv reads the OTEL_* variables of tracing (nil: none set).
	Getenv func(string) string
}

// EnvPrefix is prepended to a flag's upper-cased name (dashes become
// underscores) to form its environment variable.
const EnvPrefix = "LOADGEN_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func defaultConfig() Config {
	return Config{
		Target:         "http://localhost:5000",
		Mode:           ModeScenario,
		Rate:           20,
		Concurrency:    8,
		MaxConcurrency: 1000,
		IDs:            8,
		Size:           SizeRange{Min: 1024, Max: 1024},
		Mix:            MustParseMix("put=1,get=3,head=1,delete=1"),
		Think:          500 * time.Millisecond,
		MaxErrorRatio:  1,
		Output:         "text",
		MetricsAddress: ":9101",
		ReadyTimeout:   60 * time.Second,
		Timeout:        10 * time.Second,
	}
}

// ParseConfig reads flags from args and environment variables through
// getenv; a flag wins over its environment variable, which wins over the
// default. Usage text goes to usage. It normalises the target (no trailing
// slash) and validates the result: every problem at once, as a
// cli.UsageError. It returns flag.ErrHelp for -h.
func ParseConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := defaultConfig()
	fs := envflag.New("loadgen", usage)
	fs.Footer = tracing.EnvHelp
	fs.StringVar(&c.Target, "target", EnvName("target"), c.Target, "base URL of the storage API")
	fs.StringVar(&c.Mode, "mode", EnvName("mode"), c.Mode, "scenario (virtual users: PUT, think, GET, think/2, DELETE, random ids), script (the same tasks with the original script's ids: task i uses id i mod ids) or rate (open model, constant request rate)")
	fs.Float64Var(&c.Rate, "rate", EnvName("rate"), c.Rate, "requests per second in rate mode")
	fs.IntVar(&c.Concurrency, "concurrency", EnvName("concurrency"), c.Concurrency, "virtual users in scenario mode; workers started with in rate mode (the pool grows up to -max-concurrency)")
	fs.IntVar(&c.MaxConcurrency, "max-concurrency", EnvName("max-concurrency"), c.MaxConcurrency, "rate mode: most requests in flight; a request due while all are busy waits (late) and counts the wait")
	fs.DurationVar(&c.Duration, "duration", EnvName("duration"), c.Duration, "how long to send traffic; 0 runs until SIGTERM/SIGINT")
	fs.IntVar(&c.IDs, "ids", EnvName("ids"), c.IDs, "size of the id space (ids obj-0 .. obj-<ids-1>); small spaces make users collide like the original script")
	fs.Var(&c.Size, "size", EnvName("size"), `payload bytes of a PUT: fixed ("1024", "4k", "1MiB") or a uniform range ("512-4096")`)
	fs.Var(&c.Mix, "mix", EnvName("mix"), "relative weights of methods in rate mode, e.g. put=1,get=3,head=1,delete=1")
	fs.DurationVar(&c.Think, "think", EnvName("think"), c.Think, "scenario think time after PUT (half of it after GET)")
	fs.Float64Var(&c.MaxErrorRatio, "max-error-ratio", EnvName("max-error-ratio"), c.MaxErrorRatio, "exit 1 when (transport errors + 5xx) / requests exceeds this; 1 never fails")
	fs.StringVar(&c.Output, "output", EnvName("output"), c.Output, "summary format: text or json")
	fs.StringVar(&c.MetricsAddress, "metrics-address", EnvName("metrics-address"), c.MetricsAddress, "listen address of /metrics; empty disables it")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", EnvName("ready-timeout"), c.ReadyTimeout, "how long to wait for the target's /readyz before starting; 0 skips the wait")
	fs.DurationVar(&c.Timeout, "timeout", EnvName("timeout"), c.Timeout, "timeout of one request")
	if err := fs.Parse(args, getenv); err != nil {
		return c, err
	}
	c.Target = strings.TrimRight(c.Target, "/")
	c.Getenv = getenv
	return c, cli.Usage(c.Validate())
}

// Validate reports every invalid setting at once (errors.Join). It changes
// nothing: normalising is ParseConfig's.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(c.Target); err != nil {
		bad("-target: %w", err)
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		bad("-target %q: want an http(s) URL with a host", c.Target)
	}
	if c.Mode != ModeScenario && c.Mode != ModeScript && c.Mode != ModeRate {
		bad("-mode %q: want %s, %s or %s", c.Mode, ModeScenario, ModeScript, ModeRate)
	}
	if c.Mode == ModeRate && !(c.Rate > 0 && c.Rate <= 1e6) {
		bad("-rate %v: want a rate in (0, 1e6]", c.Rate)
	}
	if c.Concurrency < 1 || c.Concurrency > 100000 {
		bad("-concurrency %d: want 1..100000", c.Concurrency)
	}
	if c.Mode == ModeRate && (c.MaxConcurrency < c.Concurrency || c.MaxConcurrency > 100000) {
		bad("-max-concurrency %d: want -concurrency (%d) .. 100000", c.MaxConcurrency, c.Concurrency)
	}
	if c.Duration < 0 {
		bad("-duration %v: must not be negative", c.Duration)
	}
	if c.IDs < 1 {
		bad("-ids %d: want at least 1", c.IDs)
	}
	if c.Think < 0 {
		bad("-think %v: must not be negative", c.Think)
	}
	if !(c.MaxErrorRatio >= 0 && c.MaxErrorRatio <= 1) {
		bad("-max-error-ratio %v: want 0..1", c.MaxErrorRatio)
	}
	if c.Output != "text" && c.Output != "json" {
		bad("-output %q: want text or json", c.Output)
	}
	if c.ReadyTimeout < 0 {
		bad("-ready-timeout %v: must not be negative", c.ReadyTimeout)
	}
	if c.Timeout <= 0 {
		bad("-timeout %v: must be positive", c.Timeout)
	}
	return errors.Join(errs...)
}
