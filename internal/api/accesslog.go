package api

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes one JSON line per request, in the same shape as the service's slog
// lines ({"time","level","msg",...}), so log pipelines parse both alike. It encodes by
// hand into pooled buffers: through slog the line cost about 3.3 µs and 2 allocations,
// the largest single cost of a request (docs/performance.md); this costs about 0.6 µs.
type accessLog struct {
	w    io.Writer // already buffered and safe for concurrent use (internal/logging)
	pool sync.Pool
}

func newAccessLog(w io.Writer) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w, pool: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

type accessEntry struct {
	method, path, uri, requestID, remote string
	traceID, spanID                      string // of a sampled request; else empty and not written
	status                               int
	bytes                                int64
	duration                             time.Duration
}

func (l *accessLog) write(now time.Time, e accessEntry) {
	bp := l.pool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, e.uri)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration_seconds":`...)
	b = strconv.AppendFloat(b, e.duration.Seconds(), 'f', -1, 64)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.requestID)
	b = append(b, `,"remote":`...)
	b = appendJSONString(b, e.remote)
	if e.traceID != "" {
		// Hex from the SDK: nothing to escape.
		b = append(b, `,"trace_id":"`...)
		b = append(b, e.traceID...)
		b = append(b, `","span_id":"`...)
		b = append(b, e.spanID...)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	_, _ = l.w.Write(b)
	*bp = b
	l.pool.Put(bp)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (the URI and method come from
// clients and must not break the line).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
