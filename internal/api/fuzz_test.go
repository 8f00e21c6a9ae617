package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
)

// FuzzValidateID checks ValidateID against what it protects, not against a copy of its
// rules: an id it accepts can be stored through the real router at its escaped URL, and the
// Location the API answers reads the same bytes back (no redirect to another object); an id
// it refuses is refused by the API with 400 and a JSON "invalid id" error, and its error
// says so too.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "a/../b", "..", "./a", "a//b", "a/", "ü", "\xff", "%2e%2e", strings.Repeat("x", 1024), strings.Repeat("x", 1025), "\x00"} {
		f.Add(s)
	}
	h := New(Options{
		Store:          memory.New(),
		MaxObjectSize:  1 << 10,
		Log:            slog.New(slog.DiscardHandler),
		Metrics:        metrics.NewHTTP(prometheus.NewRegistry()),
		MetricsHandler: http.NotFoundHandler(),
	})
	serve := func(method, target string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://localhost"+target, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID(id)
		body := []byte(storage.ETag([]byte(id))) // distinct per id, within MaxObjectSize
		put := serve("PUT", "/api/buckets/"+url.PathEscape(id), body)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid id") {
				t.Fatalf("ValidateID(%q) = %q: the error does not say the id is invalid", id, err)
			}
			var e struct{ Error string }
			if put.Code != http.StatusBadRequest || json.Unmarshal(put.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, "invalid") {
				t.Fatalf("PUT of refused id %q = %d %s, want 400 with a JSON invalid-id error", id, put.Code, put.Body)
			}
			return
		}
		if put.Code != http.StatusCreated && put.Code != http.StatusNoContent {
			t.Fatalf("PUT of accepted id %q = %d %s, want 201 or 204", id, put.Code, put.Body)
		}
		loc := put.Header().Get("Location")
		if put.Code == http.StatusCreated && loc == "" {
			t.Fatalf("PUT of %q: 201 without Location", id)
		}
		if loc == "" {
			loc = "/api/buckets/" + url.PathEscape(id)
		}
		get := serve("GET", loc, nil)
		if get.Code != http.StatusOK || !bytes.Equal(get.Body.Bytes(), body) {
			t.Fatalf("GET %s after PUT of %q = %d %q, want 200 %q", loc, id, get.Code, get.Body, body)
		}
	})
}

// FuzzETagMatches feeds If-None-Match headers against the ETags the server really sends:
// quoted hex SHA-256s of some content (storage.ETag), never containing a comma or quote.
func FuzzETagMatches(f *testing.F) {
	f.Add(`"abc"`, []byte("abc"))
	f.Add(`W/"abc", "def"`, []byte("def"))
	f.Add("*", []byte("x"))
	f.Add(",,,", []byte(""))
	f.Add(`"`+storage.ETag([]byte("x"))+`"`, []byte("x"))
	f.Fuzz(func(t *testing.T, header string, content []byte) {
		tag := storage.ETag(content)
		quoted := quoteETag(tag)
		got := etagMatches(header, quoted)
		// A header listing the tag itself, strong or weak, anywhere, always matches.
		for _, h := range []string{header + ", " + quoted, quoted + "," + header, header + ", W/" + quoted, " " + quoted + " "} {
			if !etagMatches(h, quoted) {
				t.Fatalf("header %q lists %s but does not match", h, quoted)
			}
		}
		// A header that neither holds the tag nor a * token cannot match: the tag is the
		// only thing compared.
		hasStar := false
		for tok := range strings.SplitSeq(header, ",") {
			hasStar = hasStar || strings.TrimSpace(tok) == "*"
		}
		if got && !hasStar && !strings.Contains(header, quoted) {
			t.Fatalf("header %q matches %s without listing it or *", header, quoted)
		}
	})
}

// FuzzHandler sends arbitrary methods, paths and bodies through the whole API. It must
// never panic, always answer a known status, answer JSON on every error, and a 2xx PUT
// must read back byte for byte.
func FuzzHandler(f *testing.F) {
	f.Add("PUT", "/api/buckets/a", []byte("hello"))
	f.Add("GET", "/api/buckets/a", []byte(nil))
	f.Add("DELETE", "/api/buckets/%2F..%2F", []byte(nil))
	f.Add("BREW", "/api/buckets/", []byte("x"))
	f.Add("GET", "/metrics", []byte(nil))
	f.Add("PUT", "/api/buckets/%ff", []byte("x"))
	f.Add("PUT", "/api/buckets/"+strings.Repeat("é", 600), []byte("x"))
	h := New(Options{
		Store:          memory.New(),
		MaxObjectSize:  1 << 10,
		Log:            slog.New(slog.DiscardHandler),
		Metrics:        metrics.NewHTTP(prometheus.NewRegistry()),
		MetricsHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
	})
	known := map[int]bool{200: true, 201: true, 204: true, 304: true, 400: true, 404: true, 405: true, 413: true}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if !validMethod(method) || !strings.HasPrefix(target, "/") {
			return // net/http rejects these before any handler runs
		}
		req, err := http.NewRequest(method, "http://localhost"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		// As a client sends it (an empty PUT without one is refused with 411, a case of its own test).
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !known[rec.Code] && rec.Code != http.StatusMovedPermanently && rec.Code != http.StatusTemporaryRedirect {
			t.Fatalf("%s %q: unexpected status %d %s", method, target, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && method != "HEAD" {
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %q: %d with non-JSON error body %q", method, target, rec.Code, rec.Body)
			}
		}
		if method == "PUT" && (rec.Code == 201 || rec.Code == 204) {
			get, _ := http.NewRequest("GET", "http://localhost"+target, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, get)
			got, _ := io.ReadAll(rec.Body)
			if rec.Code != 200 || !bytes.Equal(got, body) {
				t.Fatalf("PUT %q then GET = %d, %q; want 200, %q", target, rec.Code, got, body)
			}
		}
	})
}

// validMethod mirrors net/http's token check for request methods.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c > 0x7e || c <= 0x20 || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

// FuzzAccessLogString: whatever a client puts in a URI or method, the access-log line
// stays valid JSON and keeps the text (invalid UTF-8 becoming U+FFFD).
func FuzzAccessLogString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote\back`, "\x00\n\t\x1f", "ü日本", "\xff\xfe", "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		b := appendJSONString(nil, s)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want && utf8.ValidString(s) {
			t.Fatalf("appendJSONString(%q) decodes to %q", s, got)
		}
	})
}
