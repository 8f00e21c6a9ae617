package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sre-instrumentation/storage-api/internal/metrics"
	"github.com/sre-instrumentation/storage-api/internal/storage/memory"
)

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "ü", "\xff", strings.Repeat("x", 1024), strings.Repeat("x", 1025), "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID(id)
		valid := id != "" && len(id) <= MaxIDBytes && utf8.ValidString(id)
		if (err == nil) != valid {
			t.Fatalf("ValidateID(%q) = %v, want valid=%v", id, err, valid)
		}
	})
}

func FuzzETagMatches(f *testing.F) {
	f.Add(`"abc"`, "abc")
	f.Add(`W/"abc", "def"`, "def")
	f.Add("*", "x")
	f.Add(",,,", "")
	f.Fuzz(func(t *testing.T, header, etag string) {
		quoted := quoteETag(etag)
		got := etagMatches(header, quoted)
		// A header listing the tag itself always matches.
		if !etagMatches(header+", "+quoted, quoted) {
			t.Fatalf("header %q with %q appended does not match", header, quoted)
		}
		if strings.TrimSpace(header) == quoted && !got {
			t.Fatalf("exact header %q does not match", header)
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
