package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"

	"github.com/sre-instrumentation/storage-api/internal/api"
)

// TestGracefulShutdown sends SIGTERM while clients GET and PUT continuously and some
// requests are held in flight by injected latency. No request the server accepted may
// fail, the process must exit 0 within its shutdown timeout, and every acknowledged PUT
// must be in the store afterwards.
//
// What "accepted" means, precisely: on SIGTERM the server closes its listener (after
// -shutdown-delay), closes idle keep-alive connections, lets active ones finish and
// closes each after its answer. A client can therefore see three harmless errors:
//   - connection refused: it dialled after the listener closed; nothing was accepted.
//   - its idle connection closed under it just as it sent a request, which the server
//     never read. net/http's Transport retries such a request on a new connection by
//     itself if the request is replayable: GET is, and PUT is once it carries an
//     Idempotency-Key header (it is idempotent anyway: same id, same bytes). The retry
//     then dials and is refused: the first case.
//   - a reset on a fresh connection: a worker whose connection closed after its last
//     answer dials anew in the instant before the listener closes; the kernel completes
//     the handshake, the server never accepts the connection, and closing the listener
//     resets it. Each worker keeps its own connection alive and the client never opens
//     more (newClient sets MaxConnsPerHost), so only such a last-moment dial is fresh.
//
// The client alone cannot tell the second case from a server that drops requests it
// was handling (srv.Close instead of srv.Shutdown): the Transport retries both, and both
// end refused. The server's access log can: it has a line for every request that
// reached the handler. So every request carries a unique X-Request-Id.
//
// Failures, then: any status other than the expected ones; any error before SIGTERM;
// after it, any error but the three above; any request the access log shows handled
// (or logged as 499 or 5xx) that the client saw fail.
func TestGracefulShutdown(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T, args ...string) *proc
		delay bool // -shutdown-delay held until the test has seen the server serve through it
	}{
		// The binary, stopped by a real SIGTERM.
		{"no delay", func(t *testing.T, args ...string) *proc { return startProc(t, nil, args...) }, false},
		// In process, where the test ends the delay (delayEndKey) once it has seen what it
		// must, instead of racing a clock.
		{"shutdown delay", func(t *testing.T, args ...string) *proc { return startInProcess(t, nil, args...) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testGracefulShutdown(t, tt.start, tt.delay) })
	}
}

func testGracefulShutdown(t *testing.T, startServer func(t *testing.T, args ...string) *proc, delay bool) {
	const (
		workers         = 6
		shutdownTimeout = 10 * time.Second
		seedObjects     = 20
	)
	dir := t.TempDir()
	shutdownDelay := time.Duration(0)
	if delay {
		shutdownDelay = heldDelay
	}
	p := startServer(t, "-listen-address", "127.0.0.1:0", "-storage", "bolt", "-data-dir", dir,
		"-fault-latency", "300ms", "-fault-latency-ratio", "0.2",
		"-shutdown-timeout", shutdownTimeout.String(), "-shutdown-delay", shutdownDelay.String())
	client := newClient(workers)
	objURL := func(id string) string { return p.url + "/api/buckets/" + id }

	for i := range seedObjects {
		status, _, _, err := do(client, http.MethodPut, objURL("seed-"+strconv.Itoa(i)), []byte("seed"), nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("seeding: %d, %v", status, err)
		}
	}

	var (
		sigAt      atomic.Int64 // UnixNano when SIGTERM was sent; 0 before
		stop       atomic.Bool
		mu         sync.Mutex
		failures   []string
		acked      = map[string][]byte{}
		unanswered = map[string]string{} // X-Request-Id -> request, for requests that ended refused or reset
		answered   = map[string]string{} // X-Request-Id -> request, for requests that got a response
		done       atomic.Int64          // answered requests
		afterSig   atomic.Int64          // answered requests sent after SIGTERM
		spanSignal atomic.Int64          // requests sent before SIGTERM and answered after it
		wg         sync.WaitGroup
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; !stop.Load(); n++ {
				var (
					method, id string
					data       []byte
					reqID      = fmt.Sprintf("gs-%d-%d", w, n)
					header     = http.Header{"X-Request-Id": {reqID}}
				)
				if n%2 == 0 {
					method, id = http.MethodPut, fmt.Sprintf("w%d-%d", w, n)
					data = body(rng.Uint64(), 1+rng.IntN(4<<10))
					header.Set("Idempotency-Key", id)
				} else {
					method, id = http.MethodGet, "seed-"+strconv.Itoa(rng.IntN(seedObjects+5)) // some are 404s
				}
				sent := time.Now().UnixNano()
				var fresh atomic.Bool // the last connection tried was a new one
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					GotConn: func(ci httptrace.GotConnInfo) { fresh.Store(!ci.Reused) },
				})
				status, _, _, err := doCtx(ctx, client, method, objURL(id), data, header)
				began := sigAt.Load()
				if err != nil {
					if began != 0 && (errors.Is(err, syscall.ECONNREFUSED) || fresh.Load() && closedBeforeAccept(err)) {
						mu.Lock()
						unanswered[reqID] = method + " " + id
						mu.Unlock()
						return // the listener is closed: the server is gone for this client
					}
					fail("%s %s (shutdown begun: %v): %v", method, id, began != 0, err)
					return
				}
				done.Add(1)
				mu.Lock()
				answered[reqID] = method + " " + id
				mu.Unlock()
				switch {
				case began != 0 && sent >= began:
					afterSig.Add(1)
				case began != 0:
					spanSignal.Add(1)
				}
				switch {
				case method == http.MethodPut && (status == http.StatusCreated || status == http.StatusNoContent):
					mu.Lock()
					acked[id] = data
					mu.Unlock()
				case method == http.MethodGet && (status == http.StatusOK || status == http.StatusNotFound):
				default:
					fail("%s %s (shutdown begun: %v): status %d", method, id, began != 0, status)
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	// Signal once traffic flows: at least 50 answers and 300ms, so slow requests are in
	// flight (bounded wait).
	start := time.Now()
	for (done.Load() < 50 || time.Since(start) < 300*time.Millisecond) && time.Since(start) < 30*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	sigAt.Store(time.Now().UnixNano())
	p.signal(syscall.SIGTERM)

	if delay {
		probeDuringDelay(t, p.url)
		// The delay keeps serving the workers too: hold it (bounded) until one of their
		// requests sent after SIGTERM was answered, then let the listener close.
		for deadline := time.Now().Add(30 * time.Second); afterSig.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		p.endShutdownDelay()
	}

	if code := p.wait(shutdownTimeout + 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\nstderr:\n%s", code, p.stderr)
	}
	stop.Store(true)
	wg.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d requests answered; %d were in flight at SIGTERM, %d sent after it", done.Load(), spanSignal.Load(), afterSig.Load())
	if spanSignal.Load() == 0 {
		t.Error("no request was in flight at SIGTERM: the drain was not exercised")
	}
	if delay && afterSig.Load() == 0 {
		t.Error("no request sent after SIGTERM was answered, though -shutdown-delay keeps serving")
	}

	var complete bool
	logged := map[string]float64{} // X-Request-Id -> status the server logged
	for _, r := range p.stdout.records(t) {
		if r["level"] == "ERROR" {
			t.Errorf("error logged: %v", r)
		}
		complete = complete || r["msg"] == "shutdown complete"
		if id, _ := r["request_id"].(string); r["msg"] == "request" && strings.HasPrefix(id, "gs-") {
			status, _ := r["status"].(float64)
			logged[id] = status
			if status == api.StatusClientClosedRequest || status >= 500 {
				t.Errorf("request %s: the server logged status %v", id, status)
			}
		}
	}
	if !complete {
		t.Error(`no "shutdown complete" log line`)
	}
	for reqID, req := range unanswered {
		if status, ok := logged[reqID]; ok {
			t.Errorf("%s (X-Request-Id %s): the server handled it (logged status %v) but the client got no answer", req, reqID, status)
		}
	}
	// The cross-check above is only as good as the log: every answered request must be in it.
	for reqID, req := range answered {
		if _, ok := logged[reqID]; !ok {
			t.Errorf("%s (X-Request-Id %s) was answered but has no access-log line", req, reqID)
		}
	}

	// The store was closed cleanly: the directory opens at once (bolt.Open gives up on
	// a held lock after 2s) and holds every acknowledged PUT.
	store, err := bolt.Open(dir)
	if err != nil {
		t.Fatalf("reopening the data directory after shutdown: %v", err)
	}
	defer store.Close()
	for id, want := range acked {
		obj, err := store.Get(t.Context(), id)
		if err != nil {
			t.Errorf("acknowledged PUT %s lost: %v", id, err)
			continue
		}
		var got bytes.Buffer
		_, _ = got.ReadFrom(obj.Body)
		obj.Body.Close()
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("acknowledged PUT %s: %d bytes stored, %d sent", id, got.Len(), len(want))
		}
	}
}

// closedBeforeAccept reports whether err is a connection closed or reset before any
// answer, as a dial into the backlog of a listener that then closes sees it.
func closedBeforeAccept(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// heldDelay is the -shutdown-delay of in-process tests that end the delay themselves
// (proc.endShutdownDelay): far longer than any test, so it is only ever a failure deadline.
const heldDelay = 10 * time.Minute

// probeDuringDelay runs during -shutdown-delay: /readyz must turn 503 while the listener
// still accepts, and /healthz and a PUT on new connections must still succeed.
func probeDuringDelay(t *testing.T, url string) {
	t.Helper()
	// A new connection per request: the point is that the listener is still open.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	deadline := time.Now().Add(30 * time.Second) // a failure deadline: 503 comes at once
	for {
		status, _, _, err := do(fresh, http.MethodGet, url+"/readyz", nil, nil)
		if err != nil {
			t.Fatalf("/readyz during the shutdown delay: %v (the listener closed before readiness failed)", err)
		}
		if status == http.StatusServiceUnavailable {
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("/readyz answered %d after SIGTERM; want 503", status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _, _, err := do(fresh, http.MethodGet, url+"/healthz", nil, nil); err != nil || status != http.StatusOK {
		t.Errorf("/healthz during the shutdown delay: %d, %v; want 200", status, err)
	}
	status, _, _, err := do(fresh, http.MethodPut, url+"/api/buckets/during-delay", []byte("still serving"), nil)
	if err != nil || status != http.StatusCreated {
		t.Errorf("PUT on a new connection during the shutdown delay: %d, %v; want 201", status, err)
	}
}

// waitListenerClosed waits until a dial to addr is refused, or reset as the listener closes
// with it in the backlog: the listener has closed.
func waitListenerClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a failure deadline
	for {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
			return
		}
		if err != nil {
			t.Fatalf("dial %s while waiting for the listener to close: %v", addr, err)
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the listener on %s still accepts 30s after the shutdown delay ended", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pausedPut is a PUT whose body is held half-sent: in flight at the server until finish.
type pausedPut struct {
	body *io.PipeWriter
	rest []byte
	done chan pausedResult
}

type pausedResult struct {
	status int
	err    error
}

// startPausedPut sends a PUT's headers and the first KiB of its body, and returns once the
// server counts it in http_requests_in_flight (its handler is reading the body).
func startPausedPut(t *testing.T, url string) *pausedPut {
	t.Helper()
	data := bytes.Repeat([]byte("f"), 64<<10)
	r, w := io.Pipe()
	req, err := http.NewRequest(http.MethodPut, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	p := &pausedPut{body: w, rest: data[1<<10:], done: make(chan pausedResult, 1)}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Minute}
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			p.done <- pausedResult{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		p.done <- pausedResult{status: resp.StatusCode}
	}()
	t.Cleanup(func() { w.CloseWithError(errors.New("test over")) })
	if _, err := w.Write(data[:1<<10]); err != nil {
		t.Fatalf("PUT's first KiB: %v", err)
	}
	base := strings.TrimSuffix(url, req.URL.Path)
	inFlight := regexp.MustCompile(`(?m)^http_requests_in_flight (\d+)$`)
	deadline := time.Now().Add(30 * time.Second) // a failure deadline
	for {
		// The scrape counts itself: 2 means the PUT's handler runs too.
		_, _, metrics, err := do(newClient(1), http.MethodGet, base+"/metrics", nil, nil)
		if m := inFlight.FindSubmatch(metrics); err == nil && m != nil {
			if n, _ := strconv.Atoi(string(m[1])); n >= 2 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the PUT never showed in http_requests_in_flight (last scrape: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish sends the rest of the body and returns the PUT's status.
func (p *pausedPut) finish() (int, error) {
	if _, err := p.body.Write(p.rest); err != nil {
		return 0, fmt.Errorf("the rest of the body: %w", err)
	}
	p.body.Close()
	select {
	case r := <-p.done:
		return r.status, r.err
	case <-time.After(time.Minute): // a failure deadline
		return 0, errors.New("no answer within a minute of the body's end")
	}
}
