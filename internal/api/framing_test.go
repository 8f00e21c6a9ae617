package api

import (
	"io"
	"net"
	"strings"
	"testing"
)

// The guard must not hide what net/http looks for on a *net.TCPConn: CloseWrite (the
// half-close before closing on an unread body, without which the client may get a
// reset instead of the answer) and ReadFrom (sendfile).
func TestGuardConnKeepsTCPMethods(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := GuardListener(ln, 0)
	defer g.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, err := g.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("guarded connection has no CloseWrite")
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Error("guarded connection has no ReadFrom")
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
}

func TestFramingScanner(t *testing.T) {
	const ambiguous = "PUT /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	tests := []struct {
		name   string
		stream string
		want   connVerdict
		// aligned: the scanner must still be at a request boundary afterwards, which is
		// checked by appending an ambiguous request and expecting it to be caught.
		aligned bool
	}{
		{"get", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", framingOK, true},
		{"content-length body", "PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\r\nc", framingOK, true},
		{"body that looks like a request", "PUT /x HTTP/1.1\r\nContent-Length: 28\r\n\r\n" + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", framingOK, true},
		{"chunked", "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA;ext=\"q\"\r\n0123456789\r\n0\r\n\r\n", framingOK, true},
		{"chunked with trailer", "PUT /x HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n", framingOK, true},
		{"bare LF header lines", "GET / HTTP/1.1\nHost: x\n\n", framingOK, true},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\n\r\n", framingOK, true},
		{"http/1.0 ignores transfer-encoding", "PUT /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", framingOK, true},
		{"duplicate equal content-length", "PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", framingOK, true},
		{"long uri", "GET /" + strings.Repeat("u", 5000) + " HTTP/1.1\r\nX-Long: " + strings.Repeat("v", 3000) + "\r\n\r\n", framingOK, true},
		{"cl and te", "PUT /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", framingAmbiguous, false},
		{"te and cl", "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n", framingAmbiguous, false},
		{"cl and te on http/1.0", "PUT /x HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", framingAmbiguous, false},
		{"cl and unsupported te", "PUT /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n", framingAmbiguous, false},
		{"unsupported te", "PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", framingLost, false},
		{"two te lines", "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", framingLost, false},
		{"folded te", "PUT /x HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", framingLost, false},
		{"conflicting cl", "PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", framingLost, false},
		{"bad cl", "PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", framingLost, false},
		{"bad chunk size", "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", framingLost, false},
		{"chunk line bare LF", "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n", framingLost, false},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", framingLost, false},
		{"header block too large", "GET / HTTP/1.1\r\nX: " + strings.Repeat("v", 9000) + "\r\n\r\n", framingLost, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := tc.stream
			want := tc.want
			if tc.aligned {
				stream += ambiguous
				want = framingAmbiguous
			}
			// Every split into two reads must give the same verdict.
			for cut := 0; cut <= len(stream); cut++ {
				s := framingScanner{maxBlock: 8192}
				got := s.scan([]byte(stream[:cut]))
				if got == framingOK {
					got = s.scan([]byte(stream[cut:]))
				}
				if got != want {
					t.Fatalf("split at %d: verdict %d, want %d", cut, got, want)
				}
			}
		})
	}
}

// FuzzFramingScanner: any byte stream, read in any two pieces, gets one verdict and
// never panics.
func FuzzFramingScanner(f *testing.F) {
	f.Add("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 10)
	f.Add("PUT /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 3)
	f.Fuzz(func(t *testing.T, stream string, cut int) {
		whole := framingScanner{maxBlock: 8192}
		want := whole.scan([]byte(stream))
		cut = max(0, min(len(stream), cut))
		s := framingScanner{maxBlock: 8192}
		got := s.scan([]byte(stream[:cut]))
		if got == framingOK {
			got = s.scan([]byte(stream[cut:]))
		}
		if got != want {
			t.Fatalf("verdict %d in two reads, %d in one", got, want)
		}
	})
}

// BenchmarkFramingScanner: the guard's cost per request, for a typical GET's header
// block and a 1 KiB PUT.
func BenchmarkFramingScanner(b *testing.B) {
	get := []byte("GET /api/buckets/object-0042 HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
	put := append([]byte("PUT /api/buckets/object-0042 HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 1024\r\nContent-Type: application/octet-stream\r\nAccept-Encoding: gzip\r\n\r\n"), make([]byte, 1024)...)
	for _, bc := range []struct {
		name string
		req  []byte
	}{{"GET", get}, {"PUT1KiB", put}} {
		b.Run(bc.name, func(b *testing.B) {
			s := framingScanner{maxBlock: 8192}
			b.SetBytes(int64(len(bc.req)))
			b.ReportAllocs()
			for b.Loop() {
				if s.scan(bc.req) != framingOK {
					b.Fatal("verdict")
				}
			}
		})
	}
}
