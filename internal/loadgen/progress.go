package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Progress intervals: a live line on a terminal, a log line otherwise (a
// container log gets one line per 10 s rather than a flood).
const (
	terminalInterval = time.Second
	logInterval      = 10 * time.Second
)

// isTerminal tells whether w is a character device, without a dependency
// for a full terminal check.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressLine formats one report: totals since start, rate and p99 over the
// last window.
func progressLine(elapsed time.Duration, p Progress, window time.Duration) string {
	rate := 0.0
	if window > 0 {
		rate = float64(p.WindowRequests) / window.Seconds()
	}
	ratio := 0.0
	if p.Requests > 0 {
		ratio = 100 * float64(p.Errors) / float64(p.Requests)
	}
	return fmt.Sprintf("elapsed %s  requests %d  rate %.1f/s  errors %d (%.2f%%)  p99 %s",
		elapsed.Round(time.Second), p.Requests, rate, p.Errors, ratio, fmtSeconds(p.WindowP99.Seconds()))
}

// reportProgress reports until ctx is done. On a terminal it rewrites one
// line and clears it at the end, so the summary starts on a clean line.
func reportProgress(ctx context.Context, stats *Stats, w io.Writer, terminal bool, log *slog.Logger) {
	interval := logInterval
	if terminal {
		interval = terminalInterval
	}
	start := time.Now()
	last := start
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if terminal {
				fmt.Fprint(w, "\r\033[2K")
			}
			return
		case now := <-t.C:
			p := stats.TakeProgress()
			window := now.Sub(last)
			last = now
			if terminal {
				fmt.Fprint(w, "\r\033[2K"+progressLine(now.Sub(start), p, window))
			} else {
				log.Info("progress", "elapsed", now.Sub(start).Round(time.Second).String(),
					"requests", p.Requests, "rate", fmt.Sprintf("%.1f", float64(p.WindowRequests)/window.Seconds()),
					"errors", p.Errors, "p99", fmtSeconds(p.WindowP99.Seconds()))
			}
		}
	}
}
