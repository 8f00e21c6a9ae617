// Command storage-api serves the Storage API: PUT/GET/HEAD/DELETE /api/buckets/{id},
// with /healthz, /readyz and Prometheus metrics at /metrics. Run with -h for its flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/admission"
	"github.com/sre-instrumentation/storage-api/internal/api"
	"github.com/sre-instrumentation/storage-api/internal/cli"
	"github.com/sre-instrumentation/storage-api/internal/config"
	"github.com/sre-instrumentation/storage-api/internal/fault"
	"github.com/sre-instrumentation/storage-api/internal/logging"
	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
	"github.com/sre-instrumentation/storage-api/internal/storage/s3"
	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// Set at build time: -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

func main() {
	os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr), os.Stderr))
}

// exitCode maps run's result to the process's exit status, printing the error: the
// convention both binaries share (internal/cli): 0 for success and -h, 2 for a refused flag,
// variable or value, 1 for any other failure.
func exitCode(err error, stderr io.Writer) int {
	return cli.ExitCode("storage-api", err, stderr)
}

// run starts the server (or, with "check" first, runs the offline scrub) and blocks
// until ctx is cancelled (a signal), then shuts down gracefully: readiness fails, the listener closes, in-flight requests finish, the
// store closes.
//
// The first SIGINT or SIGTERM starts the graceful shutdown; a second one kills the process
// the default way. The signal handling is here, not in main, so tests that call run get the
// binary's behaviour (as cmd/loadgen's run does).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	if len(args) > 0 && args[0] == "check" {
		return checkCommand(args[1:], getenv, stdout, stderr)
	}
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	switch {
	case cfg.Version:
		fmt.Fprintf(stdout, "storage-api %s (revision %s, %s)\n", version, revision, runtime.Version())
		return nil
	case cfg.Healthcheck:
		return healthcheck(ctx, cfg)
	}

	logger := logging.New(stdout, cfg.LogLevel)
	defer logger.Close()
	log := logger.Logger

	if cfg.MemoryLimit > 0 && getenv("GOMEMLIMIT") == "" {
		// The runtime collects harder as the heap nears this, instead of growing past the
		// container's limit into an OOM kill. 20% is left for what the Go limit does not
		// count: the store's mapped file pages (bolt reads through mmap: up to 30 MiB under
		// the hostile-upload test) and memory outside the Go heap.
		debug.SetMemoryLimit(cfg.MemoryLimit / 10 * 8)
	}
	maxConns, err := admission.MaxConnections(cfg.MaxConnections)
	if err != nil {
		return err
	}

	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	// Close is idempotent (the conformance suite checks it): this covers early returns,
	// the explicit Close below the graceful path.
	defer store.Close()

	// Tracing is configured by the standard OTEL_* variables only, and off without an
	// OTLP endpoint (internal/tracing).
	tp, tcfg, err := tracing.New(ctx, "storage-api", version, getenv, tracing.WithHeadSampling())
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	var tracerProvider trace.TracerProvider // stays a nil interface when off
	if tp != nil {
		tracerProvider = tp
		log.Info("tracing on", "config", tcfg.String())
	}

	reg := metrics.NewRegistry(version, revision)
	var httpMetrics *metrics.HTTP
	if cfg.Metrics {
		store = metrics.InstrumentStore(store, cfg.Storage, reg)
		httpMetrics = metrics.NewHTTP(reg)
	}
	budget := admission.NewBudget(cfg.MaxInflightBytes)
	conns := admission.NewConnLimiter(maxConns, admission.Reserve)
	admissionMetrics := metrics.NewAdmission(reg, budget, conns)
	// Outermost, so the store span covers what the store metric times.
	store = tracing.InstrumentStore(store, cfg.Storage, tracerProvider)
	var accessLog io.Writer
	if cfg.AccessLog {
		accessLog = logger.Writer()
	}
	// Registered even when off, so storage_api_faults_injected_total reads 0 rather than
	// nothing; the middleware itself is only installed when a fault is configured.
	faults := fault.New(cfg.Fault, reg)
	if cfg.Fault.Enabled() {
		log.Warn("fault injection is on", "error_ratio", cfg.Fault.ErrorRatio,
			"latency", cfg.Fault.Latency.String(), "latency_ratio", cfg.Fault.LatencyRatio)
	}

	var shuttingDown atomic.Bool
	handler := api.New(api.Options{
		Store:          store,
		MaxObjectSize:  cfg.MaxObjectSize,
		Log:            log,
		AccessLog:      accessLog,
		Metrics:        httpMetrics,
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}),
		Faults:         faults,
		Tracing:        tracerProvider,
		TraceHeadRatio: tcfg.HeadRatio,
		ShuttingDown:   shuttingDown.Load,
		Budget:         budget,
		TransferRate:   admission.Rate{Min: cfg.MinTransferRate, Grace: cfg.TransferGrace},
		ReadTimeout:    cfg.ReadTimeout,
		WriteTimeout:   cfg.WriteTimeout,
		Admission:      admissionMetrics,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         conns.ConnState,
		// OPTIONS * goes to the handler, to be observed like every request, instead of
		// net/http's own unlogged answer.
		DisableGeneralOptionsHandler: true,
		// The connection limiter marks overflow connections; api.ConnContext lets
		// handlers see the request framing api.GuardListener checked.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return api.ConnContext(conns.ConnContext(ctx, c), c)
		},
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return err
	}
	log.Info("storage-api listening", "address", ln.Addr().String(), "storage", cfg.Storage,
		"version", version, "revision", revision, "metrics", cfg.Metrics,
		"max_inflight_bytes", cfg.MaxInflightBytes, "max_connections", maxConns,
		"min_transfer_rate", cfg.MinTransferRate, "go_memory_limit", debug.SetMemoryLimit(-1))
	// Closes connections carrying Content-Length + Transfer-Encoding (request
	// smuggling), which net/http would keep open. Inside the limiter: the server sees
	// the limiter's connections.
	ln = conns.Listener(api.GuardListener(ln, cfg.MaxHeaderBytes))

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	if cfg.DebugAddress != "" {
		dln, err := net.Listen("tcp", cfg.DebugAddress)
		if err != nil {
			srv.Close()
			return fmt.Errorf("-debug-address: %w", err)
		}
		dsrv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { _ = dsrv.Serve(dln) }()
		defer dsrv.Close()
		log.Info("serving pprof", "address", dln.Addr().String(), "path", "/debug/pprof/")
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	shuttingDown.Store(true)
	log.Info("shutting down: readiness now fails", "delay", cfg.ShutdownDelay.String(), "timeout", cfg.ShutdownTimeout.String())
	waitShutdownDelay(ctx, cfg.ShutdownDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if err != nil {
		log.Error("in-flight requests did not finish in time", "error", err)
		srv.Close()
	}
	if cerr := store.Close(); cerr != nil {
		log.Error("closing the store failed", "error", cerr)
		err = errors.Join(err, cerr)
	}
	if tp != nil {
		// Export the spans still batched, within what is left of the shutdown timeout
		// (at least a second, so a drain that used it all still flushes what it can).
		flushCtx, cancel := context.WithTimeout(context.Background(), max(time.Until(deadline(shutdownCtx)), time.Second))
		defer cancel()
		// A collector that is down loses these spans but does not fail the shutdown.
		if terr := tp.Shutdown(flushCtx); terr != nil {
			log.Error("flushing spans failed", "error", terr)
		}
	}
	if err == nil {
		log.Info("shutdown complete")
	}
	return err
}

// delayEndKey is the context key of a <-chan struct{} whose closing ends -shutdown-delay
// early. Only in-process tests set it on run's context: they probe the server during the
// delay for as long as they need, then end it and observe the listener close, instead of
// racing a clock.
type delayEndKey struct{}

// waitShutdownDelay waits out d, or until the channel under delayEndKey in ctx closes.
func waitShutdownDelay(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	end, _ := ctx.Value(delayEndKey{}).(<-chan struct{}) // nil, never ready, without one
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-end:
	}
}

// debugHandler serves net/http/pprof on a mux of its own (its init also registers on
// http.DefaultServeMux, which nothing here serves).
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func openStore(ctx context.Context, cfg config.Config) (storage.Store, error) {
	switch cfg.Storage {
	case "memory":
		return memory.New(), nil
	case "bolt":
		return bolt.Open(cfg.DataDir)
	case "s3":
		return s3.Open(ctx, s3.Config{
			Bucket: cfg.S3.Bucket, Prefix: cfg.S3.Prefix, Endpoint: cfg.S3.Endpoint,
			Region: cfg.S3.Region, PathStyle: cfg.S3.PathStyle, ConditionalWrites: cfg.S3.ConditionalWrites,
		})
	}
	return nil, fmt.Errorf("unknown storage backend %q", cfg.Storage)
}

// healthcheck is the container's HEALTHCHECK: the image has no shell or curl.
func healthcheck(ctx context.Context, cfg config.Config) error {
	url, err := cfg.HealthcheckURL()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
