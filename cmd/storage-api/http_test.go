package main

// HTTP correctness on the real binary: preconditions, framing, path cleaning, bounded
// echoes (docs/reliability.md, "HTTP preconditions and protocol hygiene").

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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
			return out.String()
		}
	}
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
			last := rs[len(rs)-1]
			if last.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", last.StatusCode)
			}
			wantJSONError(t, last.Header, []byte(last.Header.Get("X-Test-Body")))
			if n := strings.Count(raw, "HTTP/1."); n != len(rs) || (len(rs) != 1 && !strings.HasPrefix(a.name, "after")) {
				t.Errorf("%d responses, the pipelined request was answered: %q", len(rs), raw)
			}
			if !closed {
				t.Errorf("connection left open after the ambiguous request")
			}
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
