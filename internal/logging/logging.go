// Package logging builds the service's JSON logger. Log lines go through a buffer that
// is flushed every FlushInterval and on Close: one write system call per interval
// instead of one per access-log line, which matters at tens of thousands of requests a
// second. The price: a crash can lose up to FlushInterval of log lines.
package logging

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// FlushInterval is the longest a log line waits in the buffer.
const FlushInterval = 100 * time.Millisecond

// Logger is a JSON slog.Logger over a periodically flushed buffer.
type Logger struct {
	*slog.Logger
	w    *bufferedWriter
	stop chan struct{}
	done chan struct{}
}

// New returns a logger writing JSON lines at level and above to out.
func New(out io.Writer, level slog.Leveler) *Logger {
	w := &bufferedWriter{buf: bufio.NewWriterSize(out, 64<<10)}
	l := &Logger{
		Logger: slog.New(TraceHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})}),
		w:      w,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go l.flushLoop()
	return l
}

func (l *Logger) flushLoop() {
	defer close(l.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.w.Flush()
		case <-l.stop:
			l.w.Flush()
			return
		}
	}
}

// Writer is the logger's buffered, concurrency-safe output, for writers of ready-made
// JSON lines (the access log).
func (l *Logger) Writer() io.Writer { return l.w }

// Close flushes what is buffered and stops the flusher. Call it last: lines logged
// after Close stay in the buffer.
func (l *Logger) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.w.Flush()
}

// TraceHandler adds trace_id and span_id to every record logged with the context of a
// sampled span (handlers log with the request's context), so an error line leads to
// its trace and a trace to its lines. The access log writes the same two fields itself.
type TraceHandler struct{ slog.Handler }

// Handle adds the span's ids to r when ctx carries a sampled span.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the trace fields on the derived handler.
func (h TraceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the trace fields on the derived handler.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}

type bufferedWriter struct {
	mu  sync.Mutex
	buf *bufio.Writer
}

func (w *bufferedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *bufferedWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.buf.Flush()
}
