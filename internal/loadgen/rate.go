package loadgen

import (
	"context"
	"sync"
	"time"
)

// runRate sends requests on a fixed timetable until stop is done: request i
// is due at start + i/rate whatever happened to earlier ones (an open model).
// At most cfg.Concurrency requests are in flight; when all workers are busy a
// due request waits, and its latency, measured from its due time, includes
// that wait. That is what a user arriving on schedule would see, so a stall
// of the target shows up in the quantiles instead of being hidden by the
// generator slowing down (coordinated omission).
//
// The pacer is a few lines over time.Timer instead of a library: vegeta's
// attacker measures latency from the actual send, not the schedule, and
// golang.org/x/time/rate is a token bucket that lets a stalled client fall
// behind silently.
//
// It returns the start of the timetable.
func runRate(stop context.Context, reqCtx context.Context, cfg Config, c *client) time.Time {
	due := make(chan time.Time) // unbuffered: nothing is queued when stop comes
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for at := range due {
				c.do(reqCtx, c.mix.Pick(), c.randomID(), at)
			}
		})
	}
	start := time.Now()
	interval := float64(time.Second) / cfg.Rate
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
loop:
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(float64(i) * interval))
		// Behind schedule (a busy moment) means no sleep: catch up at once.
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-stop.Done():
				break loop
			case <-timer.C:
			}
		}
		select {
		case <-stop.Done():
			break loop
		case due <- at:
		}
	}
	close(due)
	wg.Wait()
	return start
}
