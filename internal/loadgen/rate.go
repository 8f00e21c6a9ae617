package loadgen

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// job is one scheduled request handed to a worker.
type job struct {
	due   time.Time
	paced bool // rate mode: due is a time on the timetable
	// late: no worker was free at its due time and the pool was at -max-concurrency, so
	// it waited for one, or it fell due while the pacer was still catching up after such a
	// wait. Its latency is measured from due, the wait included.
	late bool
}

// runRate sends requests on a fixed timetable until stop is done: request i is due at
// start + i/rate whatever happened to earlier ones (an open model). Every request that
// falls due before stop is accounted for, as sent (on time or late) or dropped.
//
// A due request goes to an idle worker, or to a new one while the pool is below
// cfg.MaxConcurrency (it starts with cfg.Concurrency), so a slow target makes the pool
// grow instead of the rate fall, as vegeta's attacker does. Only at the bound does a due
// request wait for a worker: it is then late, and its latency, measured from its due
// time, includes that wait, which is what a user arriving on schedule would see
// (no coordinated omission). Requests still waiting when stop comes are dropped and
// counted as such.
//
// An on-time request's latency is measured from its actual send: the pacer's own
// wake-up delay (the generator's inaccuracy, not the target's) is kept out of it and
// reported separately as schedule lag.
//
// It returns the start of the timetable and the number of requests that fell due.
// The window is exact: with a duration, the requests due are those with
// start + i/rate < start + duration, whatever the timers do at the boundary; stopped by
// a signal (sig done), those due before it. It returns the window's start and end.
func runRate(sig context.Context, reqCtx context.Context, cfg Config, c *client) (time.Time, time.Time) {
	work := make(chan job) // unbuffered: a send succeeds only when a worker is idle
	var wg sync.WaitGroup
	var workers atomic.Int64
	spawn := func(first *job) {
		c.metrics.workers.Set(float64(workers.Add(1)))
		wg.Go(func() {
			if first != nil {
				c.do(reqCtx, c.mix.Pick(), c.randomID(), *first)
			}
			for j := range work {
				c.do(reqCtx, c.mix.Pick(), c.randomID(), j)
			}
		})
	}
	for range cfg.Concurrency {
		spawn(nil)
	}
	start := time.Now()
	end := time.Time{} // zero: until a signal
	// windowOver is closed at the end of a timed window; it stops a wait for a worker.
	windowOver := make(chan struct{})
	if cfg.Duration > 0 {
		end = start.Add(cfg.Duration)
		t := time.AfterFunc(cfg.Duration, func() { close(windowOver) })
		defer t.Stop()
	}
	interval := float64(time.Second) / cfg.Rate
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var scheduled, handed int64
	// delayed: the pacer waited for a worker and has not caught up with the timetable since;
	// the requests it hands out meanwhile are late too, even to a worker that is idle by then.
	delayed := false
	due := int64(-1) // requests due in the window; -1: count them from the timetable below
loop:
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(float64(i) * interval))
		if !end.IsZero() && !at.Before(end) {
			break
		}
		// Behind schedule (a busy moment) means no sleep: catch up at once.
		if wait := time.Until(at); wait > 0 {
			delayed = false
			timer.Reset(wait)
			select {
			case <-sig.Done():
				// Stopped before this one fell due: exactly those counted were due.
				due, end = scheduled, time.Now()
				break loop
			case <-timer.C:
			}
		}
		if sig.Err() != nil { // catching up when the signal came
			due, end = scheduled, time.Now()
			break
		}
		scheduled++
		c.metrics.scheduled.Inc()
		j := job{due: at, paced: true, late: delayed}
		select {
		case work <- j:
		default:
			if workers.Load() < int64(cfg.MaxConcurrency) {
				spawn(&j)
				break
			}
			// At the bound: wait for a worker, until the window ends.
			j.late, delayed = true, true
			select {
			case work <- j:
			case <-windowOver:
				break loop
			case <-sig.Done():
				end = time.Now()
				break loop
			}
		}
		if j.late {
			c.stats.Late()
			c.metrics.late.Inc()
		}
		handed++
	}
	close(work)
	// Everything due in the window and not handed to a worker is dropped. The loop may
	// not have reached some of those (it was waiting for a worker when the window ended
	// or the signal came), so the timetable says how many fell due: i such that
	// start + i*interval < end.
	if due < 0 {
		due = max(int64(math.Ceil(float64(end.Sub(start))/interval)), scheduled)
	}
	c.metrics.scheduled.Add(float64(due - scheduled))
	c.stats.Scheduled(due, due-handed)
	c.metrics.dropped.Add(float64(due - handed))
	wg.Wait()
	c.metrics.workers.Set(0)
	return start, end
}
