package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/tracing"
)

// client sends the API requests and records every result.
type client struct {
	http    *http.Client
	base    string // target + "/api/buckets/"
	ids     int
	size    SizeRange
	mix     Mix
	payload []byte // random bytes; a PUT sends a prefix of them
	stats   *Stats
	metrics *Metrics
	tracer  trace.Tracer // nil: tracing off
	host    string       // server.address and server.port of the target
	port    int
}

func newClient(cfg Config, stats *Stats, metrics *Metrics, tp trace.TracerProvider) *client {
	// Keep one idle connection per worker so connections are reused rather
	// than re-dialled (the default keeps only 2 per host).
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency + 16,
		MaxIdleConnsPerHost: cfg.Concurrency + 16,
		// No limit on connections per host: the rate-mode pool may grow to
		// -max-concurrency requests in flight.
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	payload := make([]byte, cfg.Size.Max)
	_, _ = rand.Read(payload) // never fails
	c := &client{
		http:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		base:    cfg.Target + "/api/buckets/",
		ids:     cfg.IDs,
		size:    cfg.Size,
		mix:     cfg.Mix,
		payload: payload,
		stats:   stats,
		metrics: metrics,
	}
	if tp != nil {
		c.tracer = tp.Tracer("github.com/sre-instrumentation/storage-api/internal/loadgen")
		if u, err := url.Parse(cfg.Target); err == nil {
			c.host = u.Hostname()
			c.port, _ = strconv.Atoi(u.Port())
			if c.port == 0 {
				c.port = map[string]int{"http": 80, "https": 443}[u.Scheme]
			}
		}
	}
	return c
}

func (c *client) close() { c.http.CloseIdleConnections() }

// randomID draws an id from the shared id space.
func (c *client) randomID() string {
	return "obj-" + strconv.Itoa(mrand.IntN(c.ids))
}

// do sends one request and records it. Its latency runs from the send, except for a
// late request in rate mode (one that waited for a free worker), whose latency runs from
// its due time, the wait included.
func (c *client) do(ctx context.Context, method, id string, j job) {
	sent := time.Now()
	start := sent
	if j.late {
		start = j.due
	} else if j.paced {
		c.stats.RecordLag(sent.Sub(j.due))
	}
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.startSpan(ctx, method, id, j, sent)
	}
	code, err := c.send(ctx, method, id)
	end := time.Now()
	latency := end.Sub(start)
	var traceID string
	if span != nil {
		if sc := span.SpanContext(); sc.IsSampled() {
			traceID = sc.TraceID().String()
		}
		endSpan(span, code, err, end)
	}
	c.stats.Record(method, code, err, latency)
	c.metrics.Observe(method, code, err, latency, traceID)
}

func (c *client) send(ctx context.Context, method, id string) (int, error) {
	var body io.Reader
	var n int64
	if method == http.MethodPut {
		n = c.size.Pick()
		body = bytes.NewReader(c.payload[:n])
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+id, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.tracer != nil {
		tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	// Read the body to the end so the connection goes back to the pool.
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, err
}
