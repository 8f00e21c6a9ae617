package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// Run waits for the target, sends traffic until cfg.Duration has passed or
// ctx is done, lets the requests in flight finish, and returns the summary.
// Progress and logs go to stderr. It fails only when it cannot start.
func Run(ctx context.Context, cfg Config, stderr io.Writer) (Summary, error) {
	return runWith(ctx, cfg, stderr, NewMetrics())
}

// runWith is Run recording into metrics.
func runWith(ctx context.Context, cfg Config, stderr io.Writer, metrics *Metrics) (Summary, error) {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	stats := NewStats()
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	tp, tcfg, err := tracing.New(ctx, "loadgen", "", getenv)
	if err != nil {
		return Summary{}, fmt.Errorf("tracing: %w", err)
	}
	var tracerProvider trace.TracerProvider // a nil interface when off
	if tp != nil {
		tracerProvider = tp
		log.Info("tracing on", "config", tcfg.String())
		defer func() {
			// Flush the last batch of spans; a collector that is down loses them.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(fctx); err != nil {
				log.Error("flushing spans failed", "err", err)
			}
		}()
	}
	c := newClient(cfg, stats, metrics, tracerProvider)
	defer c.close()
	sum := Summary{Mode: cfg.Mode, Target: cfg.Target, MaxErrorRatio: cfg.MaxErrorRatio, StoppedBy: "signal"}
	if cfg.Mode == ModeRate {
		sum.TargetRate = cfg.Rate
	}

	if cfg.MetricsAddress != "" {
		addr, shutdown, err := serveMetrics(cfg.MetricsAddress, metrics.Handler(), log)
		if err != nil {
			return sum, fmt.Errorf("metrics listener: %w", err)
		}
		defer shutdown()
		log.Info("serving metrics", "address", addr.String())
	}
	if cfg.ReadyTimeout > 0 {
		if err := waitReady(ctx, c.http, cfg.Target, cfg.ReadyTimeout, log); err != nil {
			if ctx.Err() != nil { // stopped while waiting: a clean, empty run
				return finish(sum, stats, 0), nil
			}
			return sum, err
		}
	}

	stop, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Duration > 0 {
		stop, cancel = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancel()
	// Requests in flight when stop comes are allowed to finish (bounded by
	// -timeout) so that every request the target saw is counted.
	reqCtx := context.WithoutCancel(ctx)
	attrs := []any{"mode", cfg.Mode, "target", cfg.Target, "concurrency", cfg.Concurrency,
		"duration", cfg.Duration.String(), "ids", cfg.IDs, "size", cfg.Size.String()}
	if cfg.Mode == ModeRate {
		attrs = append(attrs, "rate", cfg.Rate, "max_concurrency", cfg.MaxConcurrency, "mix", cfg.Mix.String())
	} else {
		attrs = append(attrs, "think", cfg.Think.String())
	}
	log.Info("starting", attrs...)

	var stoppedAt atomic.Int64
	context.AfterFunc(stop, func() { stoppedAt.Store(time.Now().UnixNano()) })
	progressCtx, stopProgress := context.WithCancel(context.Background())
	var progressDone sync.WaitGroup
	progressDone.Go(func() { reportProgress(progressCtx, stats, stderr, isTerminal(stderr), log) })

	start, end := time.Now(), time.Time{}
	if cfg.Mode == ModeRate {
		// The timetable has its own exact window; stop is not used.
		start, end = runRate(ctx, reqCtx, cfg, c)
	} else {
		runScenario(stop, reqCtx, cfg, c)
		end = time.Now()
		if at := stoppedAt.Load(); at != 0 {
			end = time.Unix(0, at)
		}
	}
	stopProgress()
	progressDone.Wait()

	if ctx.Err() == nil {
		sum.StoppedBy = "duration"
	}
	sum = finish(sum, stats, end.Sub(start))
	log.Info("finished", "stopped_by", sum.StoppedBy, "scheduled", sum.Scheduled, "requests", sum.Requests,
		"late", sum.Late, "dropped", sum.Dropped, "errors", sum.Errors)
	return sum, nil
}

// finish copies the counts of stats into sum.
func finish(sum Summary, stats *Stats, elapsed time.Duration) Summary {
	counts := stats.Summarize(elapsed)
	counts.Mode, counts.Target, counts.StoppedBy = sum.Mode, sum.Target, sum.StoppedBy
	counts.MaxErrorRatio, counts.TargetRate = sum.MaxErrorRatio, sum.TargetRate
	return counts
}
