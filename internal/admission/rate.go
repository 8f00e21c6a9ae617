package admission

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrTooSlow is returned when a body moves slower than the minimum transfer rate.
var ErrTooSlow = errors.New("transfer too slow")

// Rate is the minimum pace of a request or response body. A transfer that moves no
// byte for Grace, or whose average rate since it started falls below Min bytes per
// second once Grace has passed, is cut. Without it a client that announces a large body
// and stalls would hold its buffer, and its share of the budget, until the read or
// write timeout (a minute by default). This is Kestrel's MinRequestBodyDataRate with a
// grace period, plus nginx's timeout between two reads.
type Rate struct {
	Min   int64 // bytes per second; 0 switches the check off
	Grace time.Duration
}

// Enabled reports whether the rate is enforced.
func (r Rate) Enabled() bool { return r.Min > 0 && r.Grace > 0 }

// rearmEvery bounds how often a deadline is moved: moving it costs a timer update, and
// a transfer reads or writes many times per millisecond.
const rearmEvery = 100 * time.Millisecond

// pacer tracks one transfer against a Rate through the connection's deadlines.
type pacer struct {
	rate     Rate
	set      func(time.Time) error // the connection's read or write deadline
	limit    time.Time             // never extend past this (the read or write timeout)
	start    time.Time
	armedAt  time.Time
	n        int64
	disabled bool // the writer cannot set deadlines (a test recorder): check the average only
}

func newPacer(rate Rate, set func(time.Time) error, limit time.Time) *pacer {
	return &pacer{rate: rate, set: set, limit: limit, start: time.Now()}
}

// arm moves the deadline to now+Grace (at most limit), unless it was moved very recently.
func (p *pacer) arm(now time.Time) {
	if p.disabled || now.Sub(p.armedAt) < rearmEvery {
		return
	}
	d := now.Add(p.rate.Grace)
	if !p.limit.IsZero() && d.After(p.limit) {
		d = p.limit
	}
	if err := p.set(d); err != nil {
		p.disabled = true
		return
	}
	p.armedAt = now
}

// progress records n more bytes and reports ErrTooSlow when the average fell too low.
func (p *pacer) progress(n int, now time.Time) error {
	p.n += int64(n)
	if elapsed := now.Sub(p.start); elapsed > p.rate.Grace && float64(p.n) < float64(p.rate.Min)*elapsed.Seconds() {
		return ErrTooSlow
	}
	return nil
}

// after accounts for one read or write that returned n, err: a deadline error becomes
// ErrTooSlow, and progress is checked against the average rate.
func (p *pacer) after(n int, err error) (int, error) {
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, ErrTooSlow
		}
		return n, err
	}
	return n, p.progress(n, time.Now())
}

// PacedReader returns body with rate enforced through rc's read deadline, never past
// limit. Reads return ErrTooSlow when the client sends too slowly. With rate off it
// returns body.
func PacedReader(body io.Reader, rc *http.ResponseController, rate Rate, limit time.Time) io.Reader {
	if !rate.Enabled() {
		return body
	}
	return &pacedReader{r: body, p: newPacer(rate, rc.SetReadDeadline, limit)}
}

type pacedReader struct {
	r io.Reader
	p *pacer
}

func (r *pacedReader) Read(b []byte) (int, error) {
	r.p.arm(time.Now())
	return r.p.after(r.r.Read(b))
}

// PacedWriter returns w with rate enforced through rc's write deadline, never past
// limit. Each Write should be a bounded chunk (the average is checked between writes).
// With rate off it returns w.
func PacedWriter(w io.Writer, rc *http.ResponseController, rate Rate, limit time.Time) io.Writer {
	if !rate.Enabled() {
		return w
	}
	return &pacedWriter{w: w, p: newPacer(rate, rc.SetWriteDeadline, limit)}
}

type pacedWriter struct {
	w io.Writer
	p *pacer
}

func (w *pacedWriter) Write(b []byte) (int, error) {
	w.p.arm(time.Now())
	return w.p.after(w.w.Write(b))
}
