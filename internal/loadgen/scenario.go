package loadgen

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runScenario runs cfg.Concurrency virtual users until stop is done. Each user
// repeats the original script's task: PUT an object, think, GET it, think
// half as long, DELETE it. In scenario mode users draw random ids from one
// shared space, so they race: some GETs and DELETEs find nothing. In script
// mode task i (counted across users) uses id i mod ids, as the original
// script's `i mod 8 + 1` did, and users start one after the other, spread
// over one task's sleeps: tasks then keep their order, so task i+ids reuses
// an id only after task i is done and few requests find nothing.
// This is a closed model: a slow target slows the users down, and latency is
// measured from each actual send.
func runScenario(stop context.Context, reqCtx context.Context, cfg Config, c *client) {
	nextID := c.randomID
	if cfg.Mode == ModeScript {
		var task atomic.Int64
		nextID = func() string { return "obj-" + strconv.FormatInt((task.Add(1)-1)%int64(c.ids), 10) }
	}
	var wg sync.WaitGroup
	for user := range cfg.Concurrency {
		wg.Go(func() {
			// Scenario: spread the users' start over one think time so they
			// do not move in lockstep. Script: start in order, spread evenly
			// over one task's sleeps, so the tasks finish in the order they
			// started and uneven sleep overruns rarely swap two of them.
			delay := time.Duration(user) * (cfg.Think + cfg.Think/2) / time.Duration(cfg.Concurrency)
			if cfg.Mode != ModeScript && cfg.Think > 0 {
				delay = rand.N(cfg.Think)
			}
			if delay > 0 && !sleep(stop, delay) {
				return
			}
			for stop.Err() == nil {
				id := nextID()
				c.do(reqCtx, http.MethodPut, id, job{due: time.Now()})
				if !sleep(stop, cfg.Think) {
					return
				}
				c.do(reqCtx, http.MethodGet, id, job{due: time.Now()})
				if !sleep(stop, cfg.Think/2) {
					return
				}
				c.do(reqCtx, http.MethodDelete, id, job{due: time.Now()})
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
