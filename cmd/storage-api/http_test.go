package main

// HTTP correctness on the real binary: preconditions, framing, path cleaning, bounded
// echoes (docs/reliability.md, "HTTP preconditions and protocol hygiene").

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// startBackends starts the binary once per local backend.
func startBackends(t *testing.T, fn func(t *testing.T, p *proc)) {
	for _, backend := range []string{"memory", "bolt"} {
		t.Run(backend, func(t *testing.T) {
			p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", backend,
				"-data-dir", t.TempDir(), "-access-log=false")
			fn(t, p)
		})
	}
}

// wantJSONError fails unless body is {"error": "..."}.
func wantJSONError(t *testing.T, h http.Header, body []byte) {
	t.Helper()
	var e struct{ Error string }
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("body is not a JSON error: %q (%v)", body, err)
	}
}

// TestPreconditions: If-Match / If-None-Match on PUT and DELETE, each step depending on
// the state the previous ones left.
func TestPreconditions(t *testing.T) {
	startBackends(t, func(t *testing.T, p *proc) {
		c := newClient(1)
		url := p.url + "/api/buckets/guarded"
		var etag string
		steps := []struct {
			name       string
			method     string
			body       string
			header     func() http.Header
			wantStatus int
			wantBody   string // the object afterwards; "" for none
		}{
			{"create only if absent", "PUT", "v1", hdr("If-None-Match", "*"), 201, "v1"},
			{"create-only again fails", "PUT", "v2", hdr("If-None-Match", "*"), 412, "v1"},
			{"stale If-Match fails", "PUT", "v2", hdr("If-Match", `"0000"`), 412, "v1"},
			{"weak tag never matches If-Match", "PUT", "v2", func() http.Header { return http.Header{"If-Match": {"W/" + etag}} }, 412, "v1"},
			{"current If-Match succeeds", "PUT", "v2", func() http.Header { return http.Header{"If-Match": {`"x", ` + etag}} }, 204, "v2"},
			{"If-None-Match on the old tag succeeds", "PUT", "v3", hdr("If-None-Match", `"`+sha("v1")+`"`), 204, "v3"},
			{"If-None-Match weak current tag fails", "PUT", "v4", func() http.Header { return http.Header{"If-None-Match": {"W/" + etag}} }, 412, "v3"},
			{"malformed If-Match is 400", "PUT", "v4", hdr("If-Match", "unquoted"), 400, "v3"},
			{"stale DELETE fails", "DELETE", "", hdr("If-Match", `"`+sha("v2")+`"`), 412, "v3"},
			{"current DELETE succeeds", "DELETE", "", func() http.Header { return http.Header{"If-Match": {etag}} }, 204, ""},
			{"If-Match * on a missing object fails", "PUT", "v5", hdr("If-Match", "*"), 412, ""},
		}
		for _, s := range steps {
			var body []byte
			if s.method == "PUT" {
				body = []byte(s.body)
			}
			status, h, b, err := do(c, s.method, url, body, s.header())
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if status != s.wantStatus {
				t.Fatalf("%s: status %d, want %d (%s)", s.name, status, s.wantStatus, b)
			}
			if status >= 400 {
				wantJSONError(t, h, b)
			}
			status, h, b, err = do(c, "GET", url, nil, nil)
			switch {
			case err != nil:
				t.Fatal(err)
			case s.wantBody == "" && status != 404:
				t.Fatalf("%s: afterwards GET %d %q, want 404", s.name, status, b)
			case s.wantBody != "" && (status != 200 || string(b) != s.wantBody):
				t.Fatalf("%s: afterwards GET %d %q, want 200 %q", s.name, status, b, s.wantBody)
			}
			etag = h.Get("Etag")
		}
	})
}

func hdr(k, v string) func() http.Header {
	return func() http.Header { return http.Header{k: {v}} }
}

func sha(s string) string { return storage.ETag([]byte(s)) }

// rawExchange writes req on a new connection and returns everything the server sends
// until it closes the connection or goes quiet for quiet.
func rawExchange(t *testing.T, addr, req string, quiet time.Duration) string {
	t.Helper()
	out, _ := rawExchangeClosed(t, addr, req, quiet)
	return out
}

// responses parses every HTTP response in raw.
func responses(t *testing.T, raw string) []*http.Response {
	t.Helper()
	var rs []*http.Response
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return rs
		}
		var body strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
		resp.Body.Close()
		resp.Header.Set("X-Test-Body", body.String())
		rs = append(rs, resp)
	}
}

// TestLengthRequired: a PUT with neither Content-Length nor chunked framing is 411, and
// nothing is stored (net/http would hand the handler an empty body).
func TestLengthRequired(t *testing.T) {
	startBackends(t, func(t *testing.T, p *proc) {
		raw := rawExchange(t, p.addr, "PUT /api/buckets/unframed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nhello", 5*time.Second)
		rs := responses(t, raw)
		if len(rs) != 1 || rs[0].StatusCode != http.StatusLengthRequired {
			t.Fatalf("unframed PUT answered %q, want one 411", raw)
		}
		wantJSONError(t, rs[0].Header, []byte(rs[0].Header.Get("X-Test-Body")))
		if status, _, _, _ := do(newClient(1), "GET", p.url+"/api/buckets/unframed", nil, nil); status != 404 {
			t.Errorf("after the 411, GET answered %d, want 404 (nothing stored)", status)
		}
		// The unframed body is not read as a next request: the connection closes.
		raw, closed := rawExchangeClosed(t, p.addr, "PUT /api/buckets/unframed HTTP/1.1\r\nHost: x\r\n\r\n"+
			"PUT /api/buckets/inner HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 3*time.Second)
		if rs := responses(t, raw); len(rs) != 1 || rs[0].StatusCode != http.StatusLengthRequired || !closed {
			t.Fatalf("unframed PUT whose body is a request: answered %q (closed: %v), want one 411 and a closed connection", raw, closed)
		}
		if status, _, _, _ := do(newClient(1), "GET", p.url+"/api/buckets/inner", nil, nil); status != 404 {
			t.Errorf("the body of the unframed PUT was executed as a request (GET inner: %d)", status)
		}
		// Content-Length: 0 is framing: an empty object is stored.
		raw = rawExchange(t, p.addr, "PUT /api/buckets/empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 5*time.Second)
		if rs := responses(t, raw); len(rs) != 1 || rs[0].StatusCode != http.StatusCreated {
			t.Fatalf("PUT with Content-Length: 0 answered %q, want 201", raw)
		}
	})
}

// rawExchangeClosed is rawExchange that also reports whether the server closed the
// connection (rather than going quiet).
func rawExchangeClosed(t *testing.T, addr, req string, quiet time.Duration) (string, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	buf := make([]byte, 4096)
	for {
		conn.SetReadDeadline(time.Now().Add(quiet))
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			var ne net.Error
			return out.String(), !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// TestRequestSmuggling: a request with both Content-Length and Transfer-Encoding is
// refused (400) and the connection closed, so a request pipelined behind it (which a
// proxy framing by Content-Length would not have seen as a request) is never answered.
// A well-framed pipeline on one connection is still served whole.
func TestRequestSmuggling(t *testing.T) {
	p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-access-log=false")
	smuggled := "GET /api/buckets/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	attacks := []struct{ name, req string }{
		{"CL then TE", "PUT /api/buckets/s1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE then CL, smuggled inside the CL body", "PUT /api/buckets/s2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: " +
			fmt.Sprint(len("0\r\n\r\n")+len(smuggled)) + "\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.0 keep-alive", "PUT /api/buckets/s3 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"after a clean request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
			"PUT /api/buckets/s4 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			raw, closed := rawExchangeClosed(t, p.addr, a.req, 3*time.Second)
			rs := responses(t, raw)
			if strings.Contains(raw, "smuggled") || len(rs) == 0 {
				t.Fatalf("unexpected answers: %q", raw)
			}
			if !closed {
				t.Errorf("connection left open after the ambiguous request")
			}
			if strings.HasPrefix(a.name, "after") {
				// The clean request is served; the connection closes after it, or after
				// the 400 to the ambiguous one (depending on whether the server had read
				// ahead to it when it answered the first).
				if rs[0].StatusCode != http.StatusOK {
					t.Errorf("the clean request before the ambiguous one answered %d", rs[0].StatusCode)
				}
				rs = rs[1:]
				if len(rs) == 0 {
					return
				}
			}
			if len(rs) != 1 || strings.Count(raw, "HTTP/1.") != len(responses(t, raw)) {
				t.Fatalf("the pipelined request was answered: %q", raw)
			}
			if rs[0].StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", rs[0].StatusCode)
			}
			wantJSONError(t, rs[0].Header, []byte(rs[0].Header.Get("X-Test-Body")))
		})
	}
	if status, _, _, _ := do(newClient(1), "GET", p.url+"/api/buckets/s1", nil, nil); status != 404 {
		t.Errorf("the ambiguous PUT stored an object (GET %d)", status)
	}

	// Control: chunked and Content-Length requests pipelined on one connection.
	clean := "PUT /api/buckets/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer-Field: x\r\n\r\n" +
		"PUT /api/buckets/d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz" +
		"GET /api/buckets/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	raw, _ := rawExchangeClosed(t, p.addr, clean, 3*time.Second)
	rs := responses(t, raw)
	if len(rs) != 3 || rs[0].StatusCode != 201 || rs[1].StatusCode != 201 || rs[2].StatusCode != 200 || rs[2].Header.Get("X-Test-Body") != "abc" {
		t.Fatalf("clean pipeline answered %q", raw)
	}
}

// metricCount sums the http_request_duration_seconds_count series of path and status.
func metricCount(t *testing.T, p *proc, path string, status int) float64 {
	t.Helper()
	code, _, body, err := do(newClient(1), "GET", p.url+"/metrics", nil, nil)
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	var sum float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "http_request_duration_seconds_count{") &&
			strings.Contains(line, `path="`+path+`"`) && strings.Contains(line, fmt.Sprintf(`status="%d"`, status)) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}

// TestNonCanonicalPaths: paths ServeMux would redirect to a cleaned path (dot segments,
// escaped or not, and empty segments) are answered by the API itself: observed in the
// metrics under a bounded path label, logged, with a request id and a JSON error. No
// answer is a redirect, and the Location of a new object is never a URL that redirects.
func TestNonCanonicalPaths(t *testing.T) {
	p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory")
	cases := []struct {
		method, target string
		status         int
		label          string
	}{
		{"GET", "/api/buckets/a/../b", 400, "/api/buckets/{id}"},
		{"PUT", "/api/buckets/.", 400, "/api/buckets/{id}"},
		{"PUT", "/api/buckets/..", 400, "/api/buckets/{id}"},
		{"PUT", "/api/buckets/%2e", 400, "/api/buckets/{id}"},
		{"DELETE", "/api/buckets/%2E%2E", 400, "/api/buckets/{id}"},
		{"PUT", "/api/buckets/x%2F..", 400, "/api/buckets/{id}"},
		{"GET", "/api/buckets/a%2F%2Fb", 400, "/api/buckets/{id}"},
		{"GET", "//metrics", 404, "unmatched"},
		{"GET", "/healthz/.", 404, "unmatched"},
		{"GET", "/api/../healthz", 404, "unmatched"},
		{"OPTIONS", "*", 404, "unmatched"},
	}
	before := map[string]float64{}
	for _, c := range cases {
		k := fmt.Sprint(c.label, c.status)
		if _, ok := before[k]; !ok {
			before[k] = metricCount(t, p, c.label, c.status)
		}
	}
	want := map[string]float64{}
	for i, c := range cases {
		id := fmt.Sprintf("noncanonical-%d", i)
		req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", c.method, c.target, id)
		rs := responses(t, rawExchange(t, p.addr, req, 5*time.Second))
		if len(rs) != 1 {
			t.Fatalf("%s %s: %d responses", c.method, c.target, len(rs))
		}
		r := rs[0]
		if r.StatusCode != c.status {
			t.Errorf("%s %s: status %d (Location %q), want %d", c.method, c.target, r.StatusCode, r.Header.Get("Location"), c.status)
		}
		if got := r.Header.Get("X-Request-Id"); got != id {
			t.Errorf("%s %s: X-Request-Id %q, want %q", c.method, c.target, got, id)
		}
		wantJSONError(t, r.Header, []byte(r.Header.Get("X-Test-Body")))
		want[fmt.Sprint(c.label, c.status)]++
	}
	for k, n := range want {
		var label string
		var status int
		for _, c := range cases {
			if fmt.Sprint(c.label, c.status) == k {
				label, status = c.label, c.status
			}
		}
		if got := metricCount(t, p, label, status) - before[k]; got != n {
			t.Errorf("metrics: %v requests counted under path=%q status=%d, want %v", got, label, status, n)
		}
	}
	// The access log has one line per request, with its id.
	deadline := time.Now().Add(5 * time.Second)
	for {
		logged := map[string]bool{}
		for _, rec := range p.stdout.records(t) {
			if id, _ := rec["request_id"].(string); rec["msg"] == "request" && strings.HasPrefix(id, "noncanonical-") {
				logged[id] = true
			}
		}
		if len(logged) == len(cases) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has %d of the %d requests", len(logged), len(cases))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A new object's Location is served as it is, never redirected.
	for _, id := range []string{"dir%2F", "a.b", "...", "x%2F.y"} {
		raw := rawExchange(t, p.addr, "PUT /api/buckets/"+id+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", 5*time.Second)
		rs := responses(t, raw)
		if len(rs) != 1 || rs[0].StatusCode != 201 {
			t.Fatalf("PUT %s: %q", id, raw)
		}
		loc := rs[0].Header.Get("Location")
		raw = rawExchange(t, p.addr, "GET "+loc+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		if rs := responses(t, raw); len(rs) != 1 || rs[0].StatusCode != 200 || rs[0].Header.Get("X-Test-Body") != "x" {
			t.Errorf("GET Location %q of %s: %q", loc, id, raw)
		}
	}
}

// TestBoundedEcho: a 10,000-byte method and URI are neither echoed whole into the
// response nor logged whole.
func TestBoundedEcho(t *testing.T) {
	p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory")
	method := strings.Repeat("M", 10000)
	uri := "/api/buckets/" + strings.Repeat("u", 1000) + "?" + strings.Repeat("q", 9000)
	for _, req := range []string{
		method + " /api/buckets/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: long-method\r\nConnection: close\r\n\r\n",
		"GET " + uri + " HTTP/1.1\r\nHost: x\r\nX-Request-Id: long-uri\r\nConnection: close\r\n\r\n",
	} {
		raw := rawExchange(t, p.addr, req, 5*time.Second)
		rs := responses(t, raw)
		if len(rs) != 1 {
			t.Fatalf("%d responses: %.200q", len(rs), raw)
		}
		if len(raw) > 1024 {
			t.Errorf("response of %d bytes to a request of %d: %.300q", len(raw), len(req), raw)
		}
		wantJSONError(t, rs[0].Header, []byte(rs[0].Header.Get("X-Test-Body")))
	}
	deadline := time.Now().Add(5 * time.Second)
	for found := 0; found < 2; {
		found = 0
		p.stdout.mu.Lock()
		lines := append([]string(nil), p.stdout.lines...)
		p.stdout.mu.Unlock()
		for _, line := range lines {
			if strings.Contains(line, `"long-method"`) || strings.Contains(line, `"long-uri"`) {
				found++
				if len(line) > 1024 {
					t.Errorf("log line of %d bytes: %.300s", len(line), line)
				}
			}
		}
		if found < 2 && time.Now().After(deadline) {
			t.Fatalf("%d of 2 access-log lines found", found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealthcheckProbesListenAddress: -healthcheck probes the address the server is
// configured to listen on, not always 127.0.0.1: a server on 127.0.0.2 or on [::1] is
// healthy, and 127.0.0.1 (where nothing of it listens) is not what is asked.
func TestHealthcheckProbesListenAddress(t *testing.T) {
	for _, host := range []string{"127.0.0.2", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			p := startProc(t, nil, "-listen-address", host+":0", "-storage", "memory", "-access-log=false")
			if !strings.HasPrefix(p.addr, host) {
				t.Fatalf("listening on %s, want %s", p.addr, host)
			}
			// The container's HEALTHCHECK runs with the service's own environment.
			code, _, stderr := runInProcess(t, 10*time.Second, []string{"LISTEN_ADDRESS=" + p.addr}, "-healthcheck")
			if code != 0 {
				t.Errorf("-healthcheck with LISTEN_ADDRESS=%s exited %d: %s", p.addr, code, stderr)
			}
		})
	}
}

// TestGuardKeepsConnectionsAlive: the framing guard and the precondition and path
// checks do not cost well-behaved clients their keep-alive connection: a mix of
// requests (Content-Length and chunked PUTs, conditional ones, GET, HEAD, DELETE, 404s,
// 412s) all travel on one connection.
func TestGuardKeepsConnectionsAlive(t *testing.T) {
	p := startProc(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-access-log=false")
	c := newClient(1)
	var dials int
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			if !i.Reused {
				dials++
			}
		},
	})
	for i := range 50 {
		url := fmt.Sprintf("%s/api/buckets/ka-%d", p.url, i%5)
		steps := []func() (int, error){
			func() (int, error) { s, _, _, err := doCtx(ctx, c, "PUT", url, []byte("body"), nil); return s, err },
			func() (int, error) {
				// Chunked: a body of unknown length.
				req, _ := http.NewRequestWithContext(ctx, "PUT", url, io.MultiReader(strings.NewReader("chunk"), strings.NewReader("ed")))
				resp, err := c.Do(req)
				if err != nil {
					return 0, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if len(req.TransferEncoding) == 0 && req.ContentLength != -1 && req.ContentLength != 0 {
					t.Fatalf("request was not chunked")
				}
				return resp.StatusCode, nil
			},
			func() (int, error) {
				s, _, _, err := doCtx(ctx, c, "PUT", url, []byte("x"), http.Header{"If-Match": {`"stale"`}})
				return s, err
			},
			func() (int, error) { s, _, _, err := doCtx(ctx, c, "GET", url, nil, nil); return s, err },
			func() (int, error) { s, _, _, err := doCtx(ctx, c, "HEAD", url, nil, nil); return s, err },
			func() (int, error) {
				s, _, _, err := doCtx(ctx, c, "GET", p.url+"/api/buckets/missing", nil, nil)
				return s, err
			},
			func() (int, error) { s, _, _, err := doCtx(ctx, c, "DELETE", url, nil, nil); return s, err },
		}
		for j, step := range steps {
			status, err := step()
			if err != nil || status >= 500 {
				t.Fatalf("round %d step %d: %d %v", i, j, status, err)
			}
		}
	}
	if dials != 1 {
		t.Errorf("%d connections for 350 well-formed requests, want 1", dials)
	}
}
