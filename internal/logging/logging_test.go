package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// sink is the logger's output: it records every Write call and is safe to read while
// the flusher writes.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writes
}

// lines splits the output into lines, each of which must be one JSON object.
func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	if out != "" && !strings.HasSuffix(out, "\n") {
		t.Errorf("output does not end with a newline: ...%q", out[max(0, len(out)-80):])
	}
	var recs []map[string]any
	for l := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not one JSON object (%v): %.200q", err, l)
		}
		recs = append(recs, m)
	}
	return recs
}

// Without Close, a line reaches the output by the periodic flush alone.
func TestFlushedWithinInterval(t *testing.T) {
	s := &sink{}
	l := New(s, slog.LevelInfo)
	defer l.Close()
	l.Info("hello", "n", 1)
	// The bound is generous (50 intervals) so a loaded machine cannot fail the test; a
	// logger that only flushed on Close or a full buffer never passes it.
	deadline := time.Now().Add(50 * FlushInterval)
	for {
		out, _ := s.snapshot()
		if out != "" {
			recs := lines(t, out)
			if len(recs) != 1 || recs[0]["msg"] != "hello" || recs[0]["n"] != 1.0 || recs[0]["level"] != "INFO" {
				t.Errorf("got %v", recs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed after %v", 50*FlushInterval)
		}
		time.Sleep(FlushInterval / 10)
	}
}

// Lines are buffered: a burst of lines costs far fewer writes than lines.
func TestBuffered(t *testing.T) {
	s := &sink{}
	l := New(s, slog.LevelInfo)
	const n = 200
	for i := range n {
		l.Info("burst", "i", i)
	}
	l.Close()
	out, writes := s.snapshot()
	if got := len(lines(t, out)); got != n {
		t.Fatalf("%d lines after Close, want %d", got, n)
	}
	// One write per line would mean no buffering. Only a flusher ticking ~n/2 times
	// while the loop runs (seconds) could reach this.
	if writes > n/2 {
		t.Errorf("%d writes for %d lines: not buffered", writes, n)
	}
}

func TestCloseFlushes(t *testing.T) {
	s := &sink{}
	l := New(s, slog.LevelDebug)
	for i := range 10 {
		l.Debug("line", "i", i)
	}
	l.Close()
	recs := lines(t, func() string { o, _ := s.snapshot(); return o }())
	if len(recs) != 10 {
		t.Fatalf("%d lines after Close, want 10", len(recs))
	}
	for i, r := range recs {
		if r["i"] != float64(i) {
			t.Errorf("line %d has i=%v: out of order", i, r["i"])
		}
	}
	// A second Close is harmless (main defers one; a future caller may add another).
	l.Close()
}

func TestLevel(t *testing.T) {
	s := &sink{}
	l := New(s, slog.LevelWarn)
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e")
	l.Close()
	out, _ := s.snapshot()
	recs := lines(t, out)
	var msgs []string
	for _, r := range recs {
		msgs = append(msgs, fmt.Sprint(r["msg"]))
	}
	if strings.Join(msgs, ",") != "w,e" {
		t.Errorf("at level warn got %v, want [w e]", msgs)
	}
}

// Concurrent loggers, the flusher running, and lines longer than the 64 KiB buffer:
// every line still arrives whole and exactly once.
func TestConcurrentWholeLines(t *testing.T) {
	s := &sink{}
	l := New(s, slog.LevelInfo)
	const goroutines, perG = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				// Mostly short lines; every 100th is larger than the buffer, which bufio
				// writes through in pieces.
				pad := strings.Repeat(string(rune('a'+g)), i%7*100)
				if i%100 == 0 {
					pad = strings.Repeat("x", 70<<10)
				}
				l.Info("concurrent", "g", g, "i", i, "pad", pad)
				if i%100 == 0 {
					time.Sleep(FlushInterval / 4) // let the flusher interleave
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	out, _ := s.snapshot()
	recs := lines(t, out)
	if len(recs) != goroutines*perG {
		t.Fatalf("%d lines, want %d", len(recs), goroutines*perG)
	}
	seen := map[[2]int]bool{}
	for _, r := range recs {
		k := [2]int{int(r["g"].(float64)), int(r["i"].(float64))}
		if seen[k] {
			t.Fatalf("line %v twice", k)
		}
		seen[k] = true
	}
}

func TestTraceIDsInLogLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(TraceHandler{slog.NewJSONHandler(&buf, nil)})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sampled := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	unsampled := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.With("k", "v").ErrorContext(sampled, "traced")
	log.ErrorContext(unsampled, "unsampled")
	log.Error("no context")
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if lines[0]["trace_id"] != tid.String() || lines[0]["span_id"] != sid.String() || lines[0]["k"] != "v" {
		t.Errorf("sampled: %v", lines[0])
	}
	for _, l := range lines[1:] {
		if _, ok := l["trace_id"]; ok {
			t.Errorf("line of no sampled trace names one: %v", l)
		}
	}
}
