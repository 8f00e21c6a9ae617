package loadgen

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// runScenario runs cfg.Concurrency virtual users until stop is done. Each user
// repeats the original script's task: PUT an object, think, GET it, think
// half as long, DELETE it. Users draw ids from one shared space, so they race
// like the original's: some GETs and DELETEs find nothing.
// This is a closed model: a slow target slows the users down, and latency is
// measured from each actual send.
func runScenario(stop context.Context, reqCtx context.Context, cfg Config, c *client) {
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			// Spread the users' start over one think time so they do not
			// move in lockstep.
			if cfg.Think > 0 && !sleep(stop, rand.N(cfg.Think)) {
				return
			}
			for stop.Err() == nil {
				id := c.randomID()
				c.do(reqCtx, http.MethodPut, id, time.Now())
				if !sleep(stop, cfg.Think) {
					return
				}
				c.do(reqCtx, http.MethodGet, id, time.Now())
				if !sleep(stop, cfg.Think/2) {
					return
				}
				c.do(reqCtx, http.MethodDelete, id, time.Now())
			}
		})
	}
	wg.Wait()
}

// sleep waits for d and reports false if stop came first.
func sleep(stop context.Context, d time.Duration) bool {
	if d <= 0 {
		return stop.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop.Done():
		return false
	case <-t.C:
		return true
	}
}
