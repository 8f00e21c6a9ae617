package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
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
}

func newClient(cfg Config, stats *Stats, metrics *Metrics) *client {
	// Keep one idle connection per worker so connections are reused rather
	// than re-dialled (the default keeps only 2 per host).
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          cfg.Concurrency + 16,
		MaxIdleConnsPerHost:   cfg.Concurrency + 16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	payload := make([]byte, cfg.Size.Max)
	_, _ = rand.Read(payload) // never fails
	return &client{
		http:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		base:    cfg.Target + "/api/buckets/",
		ids:     cfg.IDs,
		size:    cfg.Size,
		mix:     cfg.Mix,
		payload: payload,
		stats:   stats,
		metrics: metrics,
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// randomID draws an id from the shared id space.
func (c *client) randomID() string {
	return "obj-" + strconv.Itoa(mrand.IntN(c.ids))
}

// do sends one request and records it with the latency since start: the
// actual send time in scenario mode, the scheduled time in rate mode.
func (c *client) do(ctx context.Context, method, id string, start time.Time) {
	code, err := c.send(ctx, method, id)
	latency := time.Since(start)
	c.stats.Record(method, code, err, latency)
	c.metrics.Observe(method, code, err, latency)
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
