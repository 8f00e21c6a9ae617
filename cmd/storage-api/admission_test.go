package main

// Admission control on the real binary: what a hostile or broken client can make the
// server hold (memory, connections, time), measured from outside, as an attacker sees it.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// plainBinary returns a build of the server without the race detector, whose memory
// use is what production sees (a -race build uses several times more).
func plainBinary(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return serverBinary
	}
	plainOnce.Do(func() {
		// A failed build ends this test inside Do; plainPath stays empty for the next caller.
		dir := filepath.Join(filepath.Dir(serverBinary), "plain")
		testkit.BuildBinaries(t, dir, "./cmd/storage-api")
		plainPath = filepath.Join(dir, "storage-api")
	})
	if plainPath == "" {
		t.Fatal("the plain (non-race) storage-api did not build; see the first test that needed it")
	}
	return plainPath
}

var (
	plainOnce sync.Once
	plainPath string
)

// procStatus reads a field of /proc/PID/status in bytes (VmRSS, VmHWM, ...).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/proc/%d/status has no %s", pid, field)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// metricValue returns the value of one sample of the server's /metrics, e.g.
// `storage_api_requests_refused_total{reason="too_slow"}`.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	// A connection of its own each time: a kept-alive one would take a place under the
	// connection limit that the tests count.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// prober checks /healthz on a new connection every interval until stopped, each with a
// one-second budget, and remembers the failures.
type prober struct {
	stop     chan struct{}
	done     chan struct{}
	probes   atomic.Int64
	mu       sync.Mutex
	failures []string
}

func startProber(url string, interval time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(interval):
			}
			start := time.Now()
			resp, err := c.Get(url + "/healthz")
			p.probes.Add(1)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				p.mu.Lock()
				p.failures = append(p.failures, fmt.Sprintf("%s after %v: %v", start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), err))
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *prober) finish(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failures) > 0 {
		t.Errorf("/healthz did not answer 200 within 1s in %d of %d probes:\n%s", len(p.failures), p.probes.Load(), strings.Join(p.failures, "\n"))
	}
}

// stalledUpload opens a connection, announces a body of size bytes, sends all but the
// last byte and then sends nothing more. The returned channel yields the status line
// the server eventually answers, or the error that ended the connection.
func stalledUpload(t *testing.T, addr, id string, size int) (net.Conn, <-chan string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	answer := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			answer <- "error: " + err.Error()
			return
		}
		answer <- strings.TrimSpace(line)
	}()
	head := fmt.Sprintf("PUT /api/buckets/%s HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", id, size)
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	// The server may refuse before reading the body and close: a write error is an answer.
	_, _ = c.Write(bytes.Repeat([]byte{'s'}, size-1))
	return c, answer
}

// TestSlowClientsAreCut: an upload that stalls gets 408 after the grace period, and a
// reader that stops reading is disconnected, both long before the minute-long read and
// write timeouts, and both are counted.
func TestSlowClientsAreCut(t *testing.T) {
	p := startProc(t, []string{
		"LISTEN_ADDRESS=127.0.0.1:0", "STORAGE_BACKEND=memory", "ACCESS_LOG=false",
		"TRANSFER_GRACE=1s", "READ_TIMEOUT=60s", "WRITE_TIMEOUT=60s",
	})
	start := time.Now()
	_, answer := stalledUpload(t, p.addr, "slow", 1<<20)
	select {
	case line := <-answer:
		if !strings.Contains(line, " 408 ") {
			t.Errorf("stalled upload answered %q, want 408", line)
		}
		t.Logf("stalled upload answered %q after %v", line, time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("stalled upload: no answer within 30s")
	}

	// A 10 MiB object, and a reader with a tiny receive buffer that reads nothing: the
	// server's writes block once the socket buffers are full, and the pacer cuts it.
	c := newClient(1)
	if code, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/big", bytes.Repeat([]byte{'b'}, 10<<20), nil); err != nil || code != http.StatusCreated {
		t.Fatalf("PUT: %d %s %v", code, b, err)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return cmpErr(err, serr)
	}}
	conn, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/buckets/big HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, p.url, `storage_api_requests_refused_total{reason="too_slow"}`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("a reader that reads nothing was not cut within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Once cut, the connection ends short of the 10 MiB it announced.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if err != nil && !isReset(err) {
		t.Fatalf("reading the cut response: %v", err)
	}
	if n >= 10<<20 {
		t.Errorf("read %d bytes: the whole object arrived, it was not cut", n)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func isReset(err error) bool {
	var se syscall.Errno
	if errors.As(err, &se) {
		return se == syscall.ECONNRESET
	}
	return false
}

// TestConnectionLimit: with a descriptor limit of 1024 and 1,100 connections that send
// nothing, the accept loop keeps going, /healthz answers, and new API requests are
// served (idle connections make room); when every connection is busy, probes are
// still answered on the reserve and API requests get 503 with Retry-After.
func TestConnectionLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed to start the server with a low descriptor limit: %v", err)
	}
	// The build production runs: a -race build is several times slower, and the probes'
	// one-second budget is about the server, not the race detector.
	bin := plainBinary(t)
	// prlimit execs the server: the process, its pid and its output are the server's.
	wrapper := filepath.Join(t.TempDir(), "storage-api-nofile-1024")
	script := "#!/bin/sh\nexec " + prlimit + " --nofile=1024:1024 " + bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, wrapper, []string{"LISTEN_ADDRESS=127.0.0.1:0", "STORAGE_BACKEND=memory", "ACCESS_LOG=false"})
	limit := metricValue(t, p.url, "storage_api_connections_limit")
	if limit != 1024-16-80 {
		t.Errorf("storage_api_connections_limit = %v with 1024 descriptors, want %d", limit, 1024-16-80)
	}

	// 1,100 connections that never send a byte.
	var idle []net.Conn
	for range 1100 {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(idle), err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// Health and API keep answering on new connections. For the first second the silent
	// connections are too new to be evicted (a client may still be sending its headers),
	// so API requests may get 503 on the reserve; after that they take an idle one's place.
	storm := time.Now()
	probes := startProber(p.url, 50*time.Millisecond)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 25 {
		sent := time.Now()
		resp, err := c.Post(p.url+"/api/buckets/x", "", nil)
		if err != nil {
			t.Fatalf("request %d with 1,100 silent connections open: %v", i, err)
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusMethodNotAllowed:
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && sent.Sub(storm) < 1500*time.Millisecond:
		default:
			t.Errorf("request %d, %v after the connections opened: %d, want 405 (served normally)", i, sent.Sub(storm).Round(time.Millisecond), resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	probes.finish(t)
	if v := metricValue(t, p.url, "storage_api_connections_evicted_total"); v == 0 {
		t.Error("no idle connection was evicted")
	}
	if open := metricValue(t, p.url, "storage_api_connections_open"); open > limit+16 {
		t.Errorf("storage_api_connections_open = %v, over the limit and reserve %v", open, limit+16)
	}
}

// TestConnectionLimitBusy: when every connection is busy (uploads in progress), a probe
// is answered on the reserve and an API request is refused with 503 and Retry-After.
func TestConnectionLimitBusy(t *testing.T) {
	p := startProc(t, []string{"LISTEN_ADDRESS=127.0.0.1:0", "STORAGE_BACKEND=memory", "ACCESS_LOG=false",
		"MAX_CONNECTIONS=8", "TRANSFER_GRACE=30s"})
	// 8 uploads in progress: headers sent, body still coming (within the grace period).
	// Each asks for 100-continue, which the server sends when its handler starts reading
	// the body: once all eight have it, all eight connections are busy.
	for i := range 8 {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT /api/buckets/busy-%d HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", i)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, " 100 ") {
			t.Fatalf("upload %d: %q %v, want 100 Continue", i, line, err)
		}
		fmt.Fprint(c, "abc")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(p.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz at the connection limit: %d", resp.StatusCode)
	}
	resp, err = c.Get(p.url + "/api/buckets/busy-0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !json.Valid(b) {
		t.Errorf("API request at the connection limit: %d Retry-After=%q %s; want 503 with Retry-After and JSON",
			resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if v := metricValue(t, p.url, `storage_api_requests_refused_total{reason="connections"}`); v != 1 {
		t.Errorf(`storage_api_requests_refused_total{reason="connections"} = %v, want 1`, v)
	}
}

// TestMemoryBoundedUnderHostileUploads is issue 11's target: 11 uploads that send
// 10 MiB - 1 byte and stall, plus 30 concurrent 10 MiB PUTs, against the bolt store
// with the chart's memory limit. The whole resident set of the server (bolt's mapped
// file pages included) stays under 256 MiB, /healthz answers within a second all
// along, refused requests get 503 with Retry-After, and service is normal afterwards.
func TestMemoryBoundedUnderHostileUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 400 MiB through the server")
	}
	const (
		size       = 10 << 20
		memLimit   = 256 << 20
		stalled    = 11
		concurrent = 30
	)
	p := startBinary(t, plainBinary(t), []string{
		"LISTEN_ADDRESS=127.0.0.1:0", "STORAGE_BACKEND=bolt", "DATA_DIR=" + t.TempDir(),
		"ACCESS_LOG=false", "MEMORY_LIMIT=" + strconv.Itoa(memLimit),
	})
	pid := p.cmd.Process.Pid
	probes := startProber(p.url, 100*time.Millisecond)

	var answers []<-chan string
	for i := range stalled {
		_, a := stalledUpload(t, p.addr, fmt.Sprintf("stalled-%d", i), size)
		answers = append(answers, a)
	}

	body := bytes.Repeat([]byte{'x'}, size)
	var (
		wg                   sync.WaitGroup
		refused, ok, retries atomic.Int64
		errs                 = make(chan error, concurrent)
	)
	for i := range concurrent {
		wg.Go(func() {
			c := newClient(1)
			defer c.CloseIdleConnections()
			url := fmt.Sprintf("%s/api/buckets/put-%d", p.url, i)
			// A client that honours Retry-After, for at most 60 attempts.
			for range 60 {
				code, h, b, err := do(c, http.MethodPut, url, body, nil)
				switch {
				case err != nil:
					// The server closes a refused request's connection without reading
					// the body, so the client may see its write fail instead of the 503.
					retries.Add(1)
					time.Sleep(time.Second)
					continue
				case code == http.StatusServiceUnavailable:
					refused.Add(1)
					if h.Get("Retry-After") == "" || !json.Valid(b) {
						errs <- fmt.Errorf("503 without Retry-After or JSON body: %q %q", h.Get("Retry-After"), b)
						return
					}
					secs, _ := strconv.Atoi(h.Get("Retry-After"))
					time.Sleep(time.Duration(max(secs, 1)) * time.Second)
					continue
				case code == http.StatusCreated || code == http.StatusNoContent:
					ok.Add(1)
					return
				default:
					errs <- fmt.Errorf("PUT %s: %d %s", url, code, b)
					return
				}
			}
			errs <- fmt.Errorf("PUT %s: still refused after 60 attempts", url)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Every stalled upload got an answer (refused, or cut for being too slow) or was
	// closed; none may have been stored.
	for i, a := range answers {
		select {
		case line := <-a:
			t.Logf("stalled upload %d: %s", i, line)
			if strings.Contains(line, " 20") {
				t.Errorf("stalled upload %d was accepted: %s", i, line)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("stalled upload %d: no answer within 30s (the read timeout is 60s)", i)
		}
	}
	probes.finish(t)

	peak := procStatus(t, pid, "VmHWM")
	t.Logf("peak RSS %.1f MiB; %d PUTs stored, %d refused with 503, %d retried after a closed connection; %d health probes",
		float64(peak)/(1<<20), ok.Load(), refused.Load(), retries.Load(), probes.probes.Load())
	if peak >= memLimit {
		t.Errorf("peak RSS %d MiB, want under %d MiB", peak>>20, memLimit>>20)
	}
	if refused.Load()+retries.Load() == 0 {
		t.Errorf("no request was refused: the test did not reach the memory budget")
	}
	if got := metricValue(t, p.url, `storage_api_requests_refused_total{reason="inflight_bytes"}`); got == 0 {
		t.Errorf("storage_api_requests_refused_total{reason=\"inflight_bytes\"} = 0")
	}
	if got := metricValue(t, p.url, "storage_api_inflight_body_bytes"); got != 0 {
		t.Errorf("storage_api_inflight_body_bytes = %v after every client finished, want 0", got)
	}

	// Service is normal once the clients are gone.
	c := newClient(1)
	if code, _, b, err := do(c, http.MethodPut, p.url+"/api/buckets/after", body, nil); err != nil || code != http.StatusCreated {
		t.Fatalf("PUT after the storm: %d %s %v", code, b, err)
	}
	if code, _, b, err := do(c, http.MethodGet, p.url+"/api/buckets/put-0", nil, nil); err != nil || code != http.StatusOK || !bytes.Equal(b, body) {
		t.Fatalf("GET after the storm: %d, %d bytes, %v", code, len(b), err)
	}
}
