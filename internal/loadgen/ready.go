package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Backoff between /readyz polls: doubling from readyFirst up to readyMax.
const (
	readyFirst = 100 * time.Millisecond
	readyMax   = 5 * time.Second
)

// waitReady polls target/readyz until it answers 200, so loadgen can start
// together with the stack. It gives up after timeout or when ctx is done.
func waitReady(ctx context.Context, hc *http.Client, target string, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := readyFirst
	var last string
	for attempt := 1; ; attempt++ {
		last = probe(ctx, hc, target+"/readyz")
		if last == "" {
			return nil
		}
		if attempt == 1 || attempt%5 == 0 {
			log.Info("waiting for target", "url", target+"/readyz", "last", last)
		}
		if !sleep(ctx, backoff) {
			return fmt.Errorf("target %s/readyz not ready within %s (last: %s)", target, timeout, last)
		}
		backoff = min(2*backoff, readyMax)
	}
}

// probe returns "" when url answers 200, else what went wrong.
func probe(ctx context.Context, hc *http.Client, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}
