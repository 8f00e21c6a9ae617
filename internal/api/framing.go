package api

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// Request smuggling (RFC 9112 section 6.1): a request with both Content-Length and
// Transfer-Encoding is framed differently by a proxy that trusts Content-Length than by
// us (net/http trusts Transfer-Encoding), so the bytes one of them takes for a body the
// other takes for a second request. The RFC requires the server to close the
// connection after answering such a request. net/http keeps it open, and removes the
// Content-Length header before any handler runs, so no handler can tell.
//
// GuardListener therefore follows the request framing on the connection itself, as
// net/http reads it: each request's header block is examined for Content-Length and
// Transfer-Encoding, then its body is skipped by its length or by its chunks. The
// handler chain (observe) asks the connection's verdict through the request context:
//   - both headers seen: that request is answered 400 and the connection closed (a
//     request before it on the connection is served, then the connection closed);
//   - the scan lost track of the framing (something net/http will reject, or this
//     scanner does not understand): the connection is closed after the answer, so
//     nothing that follows on it can be misread.
// Once either is set it stays set for the connection.

type connVerdict uint32

const (
	framingOK        connVerdict = iota
	framingLost                  // close after this answer
	framingAmbiguous             // 400, then close
)

type guardKey struct{}

// GuardListener wraps ln so that every connection's request framing is checked (see
// above). maxHeaderBytes is the server's http.Server.MaxHeaderBytes (0: the default).
// Use it together with ConnContext.
func GuardListener(ln net.Listener, maxHeaderBytes int) net.Listener {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	// net/http allows the header block 4096 bytes beyond MaxHeaderBytes.
	return &guardListener{Listener: ln, maxBlock: maxHeaderBytes + 4096}
}

// ConnContext is the http.Server.ConnContext (or part of it) that makes a guarded
// connection's verdict visible to the handlers. c may wrap the guarded connection in
// other wrappers that expose it with a NetConn method (as tls.Conn does).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	for range 8 {
		switch cc := c.(type) {
		case *guardConn:
			return context.WithValue(ctx, guardKey{}, cc)
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return ctx
		}
	}
	return ctx
}

// framingVerdict is the verdict for this request of its connection (framingOK when the
// connection is not guarded). It must be called once per request, in order: it counts
// the connection's requests, so that only the request that carried both framing
// headers (and any after it) is refused, while one before it, already answered or
// read ahead of it, is served and then closes the connection. Should the count ever
// disagree with the scanner's, the outcome is still a closed connection.
func framingVerdict(r *http.Request) connVerdict {
	g, ok := r.Context().Value(guardKey{}).(*guardConn)
	if !ok {
		return framingOK
	}
	i := g.served.Add(1) - 1
	v := connVerdict(g.verdict.Load())
	if v == framingAmbiguous && i < g.bad.Load() {
		return framingLost
	}
	return v
}

type guardListener struct {
	net.Listener
	maxBlock int
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &guardConn{Conn: c, s: framingScanner{maxBlock: l.maxBlock}}
	g.bad.Store(-1)
	return g, nil
}

// guardConn scans what the server reads. net/http never reads a connection from two
// goroutines at once, so the scanner needs no lock; the verdict is read by handlers.
type guardConn struct {
	net.Conn
	s       framingScanner
	verdict atomic.Uint32 // set once (the scanner then stops)
	bad     atomic.Int64  // index of the request with both headers, -1 if none
	served  atomic.Int64  // requests that asked for their verdict
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.s.state != fsDone {
		if v := c.s.scan(p[:n]); v != framingOK {
			if v == framingAmbiguous {
				c.bad.Store(c.s.requests)
			}
			c.verdict.Store(uint32(v))
		}
	}
	return n, err
}

// CloseWrite keeps the TCP half-close net/http does before closing a connection whose
// request body was not read, so the client reads the answer instead of a reset.
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the kernel's copy paths (sendfile, splice) that net/http uses when the
// connection is a *net.TCPConn.
func (c *guardConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

type framingState uint8

const (
	fsHeader    framingState = iota // request line and header fields
	fsBody                          // n bytes of a Content-Length body
	fsChunkLine                     // a chunk-size line
	fsChunkData                     // n bytes of chunk data, then CRLF
	fsTrailer                       // trailer fields, up to an empty line
	fsDone                          // scanning stopped: the verdict is final
)

// framingScanner follows HTTP/1.1 request framing like net/http's server does
// (net/http/transfer.go, net/http/internal/chunked.go). It keeps only a bounded prefix
// and suffix of each line, never the whole line.
type framingScanner struct {
	maxBlock int
	requests int64 // header blocks completed: the index of the request being read
	state    framingState
	n        int64 // bytes left in fsBody / fsChunkData (chunk data's CRLF included)
	line     lineBuf
	block    int // bytes of the current header block

	// The current header block.
	requestLine bool  // seen
	http11      bool  // HTTP/1.1 or later: Transfer-Encoding applies
	clValue     int64 // -1: not a valid length
	clLines     int
	clConflict  bool
	teChunked   bool // the (last) Transfer-Encoding value is "chunked"
	teLines     int
	last        int // header of the previous line: 1 Content-Length, 2 Transfer-Encoding
}

const lineKeep = 96

// lineBuf is the start and end of a line and its length.
type lineBuf struct {
	head []byte // first lineKeep bytes
	tail [16]byte
	tn   int
	size int
}

func (l *lineBuf) reset() { l.head, l.tn, l.size = l.head[:0], 0, 0 }

func (l *lineBuf) add(b []byte) {
	l.size += len(b)
	if room := lineKeep - len(l.head); room > 0 {
		l.head = append(l.head, b[:min(room, len(b))]...)
	}
	if len(b) >= len(l.tail) {
		l.tn = copy(l.tail[:], b[len(b)-len(l.tail):])
		return
	}
	keep := min(l.tn, len(l.tail)-len(b))
	copy(l.tail[:], l.tail[l.tn-keep:l.tn])
	l.tn = keep + copy(l.tail[keep:], b)
}

// complete reports whether head is the whole line.
func (l *lineBuf) complete() bool { return l.size == len(l.head) }

func (l *lineBuf) suffix() []byte { return l.tail[:l.tn] }

// scan consumes data and returns a verdict other than framingOK when it reaches one;
// it then stops (state fsDone).
func (s *framingScanner) scan(data []byte) connVerdict {
	for len(data) > 0 {
		switch s.state {
		case fsBody, fsChunkData:
			k := min(int64(len(data)), s.n)
			data, s.n = data[k:], s.n-k
			if s.n > 0 {
				continue
			}
			if s.state == fsBody {
				s.state = fsHeader
			} else {
				s.state = fsChunkLine
			}
			continue
		case fsDone:
			return framingOK
		}
		// A line-oriented state.
		i := bytes.IndexByte(data, '\n')
		chunk := data
		if i >= 0 {
			chunk = data[:i]
		}
		s.line.add(chunk)
		if s.state == fsHeader {
			s.block += len(chunk) + 1
			if s.block > s.maxBlock {
				return s.stop(framingLost) // net/http answers 431 and closes
			}
		} else if s.line.size > 4096 {
			return s.stop(framingLost) // net/http: chunk line too long
		}
		if i < 0 {
			return framingOK
		}
		data = data[i+1:]
		var v connVerdict
		switch s.state {
		case fsHeader:
			v = s.headerLine()
		case fsChunkLine:
			v = s.chunkLine()
		case fsTrailer:
			if s.line.size <= 1 && (s.line.size == 0 || s.line.head[0] == '\r') {
				s.state = fsHeader
			}
		}
		s.line.reset()
		if v != framingOK {
			return s.stop(v)
		}
	}
	return framingOK
}

func (s *framingScanner) stop(v connVerdict) connVerdict {
	s.state = fsDone
	s.line = lineBuf{}
	return v
}

// headerLine handles one line of a header block (without its LF).
func (s *framingScanner) headerLine() connVerdict {
	empty := s.line.size == 0 || (s.line.size == 1 && s.line.head[0] == '\r')
	if !s.requestLine {
		if empty {
			s.block = 0
			return framingOK // leading empty lines (net/http skips them after a POST)
		}
		s.requestLine = true
		suf := bytes.TrimSuffix(s.line.suffix(), []byte{'\r'})
		sp := bytes.LastIndexByte(suf, ' ')
		if sp < 0 {
			return framingLost
		}
		switch proto := string(suf[sp+1:]); {
		case proto == "HTTP/1.0":
		case len(proto) == 8 && proto[:7] == "HTTP/1." && proto[7] >= '1' && proto[7] <= '9':
			s.http11 = true
		default:
			return framingLost // net/http answers 400 or 505 and closes
		}
		return framingOK
	}
	if empty {
		return s.endOfBlock()
	}
	line := bytes.TrimSuffix(s.line.head, []byte{'\r'})
	if line[0] == ' ' || line[0] == '\t' {
		// obs-fold continues the previous field: net/http joins the lines.
		if s.last != 0 {
			return framingLost
		}
		return framingOK
	}
	s.last = 0
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return framingOK // net/http rejects the request and closes
	}
	var field int
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		field = 1
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		field = 2
	default:
		return framingOK
	}
	if !s.line.complete() {
		return framingLost // a framing field too long to have kept
	}
	s.last = field
	v := bytes.Trim(value, " \t")
	if field == 1 {
		n := parseLength(v)
		if s.clLines > 0 && n != s.clValue {
			s.clConflict = true
		}
		s.clValue = n
		s.clLines++
	} else {
		s.teChunked = bytes.EqualFold(v, []byte("chunked"))
		s.teLines++
	}
	return framingOK
}

// endOfBlock decides the body's framing once the header block is complete.
func (s *framingScanner) endOfBlock() connVerdict {
	defer func() {
		s.requestLine, s.http11, s.clValue, s.clLines, s.clConflict = false, false, 0, 0, false
		s.teChunked, s.teLines, s.last, s.block = false, 0, 0, 0
	}()
	if s.clLines > 0 && s.teLines > 0 {
		return framingAmbiguous // s.requests is this request's index
	}
	s.requests++
	if s.teLines > 0 && s.http11 {
		if s.teLines != 1 || !s.teChunked {
			return framingLost // net/http answers 501 and closes
		}
		s.state = fsChunkLine
		return framingOK
	}
	if s.clLines > 0 {
		if s.clValue < 0 || s.clConflict {
			return framingLost // net/http answers 400 and closes
		}
		if s.clValue > 0 {
			s.state, s.n = fsBody, s.clValue
		}
	}
	return framingOK
}

// chunkLine parses a chunk-size line: hex size, optional extensions, CRLF.
func (s *framingScanner) chunkLine() connVerdict {
	if !s.line.complete() {
		// Longer than kept: only acceptable if the size ends within head.
		if bytes.IndexByte(s.line.head, ';') < 0 {
			return framingLost
		}
	}
	if suf := s.line.suffix(); len(suf) == 0 || suf[len(suf)-1] != '\r' {
		return framingLost // net/http requires CRLF here
	}
	line := s.line.head
	if s.line.complete() {
		line = line[:len(line)-1]
	}
	size, _, _ := bytes.Cut(line, []byte{';'})
	size = bytes.TrimRight(size, " \t")
	if len(size) == 0 || len(size) > 16 {
		return framingLost
	}
	var n uint64
	for _, c := range size {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | uint64(c-'A'+10)
		default:
			return framingLost
		}
	}
	if n == 0 {
		s.state = fsTrailer
		return framingOK
	}
	if n > 1<<62 {
		return framingLost
	}
	s.state, s.n = fsChunkData, int64(n)+2 // the data and its CRLF
	return framingOK
}

// parseLength parses a Content-Length value as net/http does (decimal digits only,
// fitting an int64), or returns -1.
func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1 // 18 digits always fit; net/http's limit is higher, but no body is that long
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
