package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"
)

// WriteJSON prints the summary as one JSON object on one line.
func (s Summary) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(s)
}

// WriteText prints the summary for people.
func (s Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "mode\t%s\n", s.Mode)
	fmt.Fprintf(tw, "target\t%s\n", s.Target)
	fmt.Fprintf(tw, "stopped by\t%s\n", s.StoppedBy)
	fmt.Fprintf(tw, "duration\t%s\n", seconds(s.DurationSeconds).Round(time.Millisecond))
	if s.Mode == ModeRate {
		fmt.Fprintf(tw, "requests\t%d scheduled: %d sent (%d of them late), %d dropped\n", s.Scheduled, s.Requests, s.Late, s.Dropped)
	} else {
		fmt.Fprintf(tw, "requests\t%d\n", s.Requests)
	}
	if s.TargetRate > 0 {
		fmt.Fprintf(tw, "rate\t%.1f req/s achieved, %.1f req/s asked\n", s.AchievedRate, s.TargetRate)
		if !s.RateDelivered {
			fmt.Fprintf(tw, "WARNING\tthe asked rate was not delivered: %d late, %d dropped\n", s.Late, s.Dropped)
		}
	} else {
		fmt.Fprintf(tw, "rate\t%.1f req/s achieved\n", s.AchievedRate)
	}
	fmt.Fprintf(tw, "errors\t%d (%.2f%%, limit %.2f%%), of which transport errors: %d\n",
		s.Errors, 100*s.ErrorRatio, 100*s.MaxErrorRatio, s.TransportErrors)
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p95 %s  p99 %s  max %s\n",
		fmtSeconds(s.Latency.P50), fmtSeconds(s.Latency.P90), fmtSeconds(s.Latency.P95), fmtSeconds(s.Latency.P99), fmtSeconds(s.Latency.Max))
	if l := s.ScheduleLag; l != nil {
		fmt.Fprintf(tw, "schedule lag\tp50 %s  p99 %s  max %s (due time to send of on-time requests; not in latency)\n",
			fmtSeconds(l.P50), fmtSeconds(l.P99), fmtSeconds(l.Max))
	}
	fmt.Fprintf(tw, "\nmethod\tstatus\tcount\n")
	for _, m := range slices.Sorted(maps.Keys(s.ByMethodStatus)) {
		byStatus := s.ByMethodStatus[m]
		for _, st := range slices.Sorted(maps.Keys(byStatus)) {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", m, st, byStatus[st])
		}
	}
	return tw.Flush()
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// fmtSeconds shows a latency with a precision that suits its size.
func fmtSeconds(f float64) string {
	d := seconds(f)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}
