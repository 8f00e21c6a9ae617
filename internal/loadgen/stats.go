package loadgen

import (
	"strconv"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// StatusError is the status label of a request that got no HTTP answer
// (connection refused, timeout, broken body).
const StatusError = "error"

// Latencies are recorded in microseconds from 1µs to one hour with three
// significant digits: HDR keeps the quantile error below 0.1% at a fixed
// memory cost, with no sampling.
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
)

// Stats accumulates results for the summary and the progress line. It is
// safe for concurrent use.
type Stats struct {
	mu              sync.Mutex
	byMethodStatus  map[string]map[string]int64
	requests        int64
	errors          int64
	transportErrors int64
	max             time.Duration
	total           *hdrhistogram.Histogram
	window          *hdrhistogram.Histogram // since the last progress report
	windowRequests  int64
	// Rate mode's accounting of the timetable: every request that fell due is sent
	// (requests, late among them) or dropped.
	scheduled, late, dropped int64
	lag                      *hdrhistogram.Histogram // due time to send, on-time requests
	maxLag                   time.Duration
}

// NewStats returns empty statistics.
func NewStats() *Stats {
	return &Stats{
		byMethodStatus: map[string]map[string]int64{},
		total:          hdrhistogram.New(histLowest, histHighest, histDigits),
		window:         hdrhistogram.New(histLowest, histHighest, histDigits),
		lag:            hdrhistogram.New(histLowest, histHighest, histDigits),
	}
}

// Late counts a request that waited for a free worker.
func (s *Stats) Late() {
	s.mu.Lock()
	s.late++
	s.mu.Unlock()
}

// Scheduled records, at the end of a rate-mode run, how many requests fell due and how
// many of those were never sent.
func (s *Stats) Scheduled(due, dropped int64) {
	s.mu.Lock()
	s.scheduled, s.dropped = due, dropped
	s.mu.Unlock()
}

// RecordLag adds the delay between an on-time request's due time and its send: the
// pacer's and scheduler's own delay, kept out of the latency.
func (s *Stats) RecordLag(lag time.Duration) {
	us := min(max(lag.Microseconds(), histLowest), histHighest)
	s.mu.Lock()
	_ = s.lag.RecordValue(us)
	s.maxLag = max(s.maxLag, lag)
	s.mu.Unlock()
}

// StatusLabel is the label of a result: the status code, or StatusError.
func StatusLabel(code int, err error) string {
	if err != nil {
		return StatusError
	}
	return strconv.Itoa(code)
}

// IsError tells whether a result counts against -max-error-ratio:
// transport errors and 5xx answers.
func IsError(code int, err error) bool {
	return err != nil || code >= 500
}

// Record adds one finished request.
func (s *Stats) Record(method string, code int, err error, latency time.Duration) {
	us := min(max(latency.Microseconds(), histLowest), histHighest)
	s.mu.Lock()
	defer s.mu.Unlock()
	byStatus := s.byMethodStatus[method]
	if byStatus == nil {
		byStatus = map[string]int64{}
		s.byMethodStatus[method] = byStatus
	}
	byStatus[StatusLabel(code, err)]++
	s.requests++
	s.windowRequests++
	if IsError(code, err) {
		s.errors++
	}
	if err != nil {
		s.transportErrors++
	}
	s.max = max(s.max, latency)
	// Values are clamped into range above, so recording cannot fail.
	_ = s.total.RecordValue(us)
	_ = s.window.RecordValue(us)
}

// Progress is a snapshot for the progress reporter.
type Progress struct {
	Requests       int64 // since the start
	Errors         int64 // since the start
	WindowRequests int64 // since the previous snapshot
	WindowP99      time.Duration
}

// TakeProgress returns the counts and starts a new window.
func (s *Stats) TakeProgress() Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Progress{
		Requests:       s.requests,
		Errors:         s.errors,
		WindowRequests: s.windowRequests,
		WindowP99:      time.Duration(s.window.ValueAtQuantile(99)) * time.Microsecond,
	}
	s.window.Reset()
	s.windowRequests = 0
	return p
}

// Latency holds quantiles in seconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summary is the result of a run; its JSON form is the -output json shape.
type Summary struct {
	Mode            string  `json:"mode"`
	Target          string  `json:"target"`
	StoppedBy       string  `json:"stopped_by"` // "duration" or "signal"
	DurationSeconds float64 `json:"duration_seconds"`
	// Scheduled requests fell due in rate mode; each was sent (Requests, Late among them)
	// or Dropped: Scheduled = Requests + Dropped. In scenario mode Scheduled = Requests.
	Scheduled int64 `json:"scheduled"`
	Requests  int64 `json:"requests"`
	Late      int64 `json:"late"`
	Dropped   int64 `json:"dropped"`
	// RateDelivered: every scheduled request was sent on time (none late or dropped).
	RateDelivered   bool                        `json:"rate_delivered"`
	Errors          int64                       `json:"errors"`
	ErrorRatio      float64                     `json:"error_ratio"`
	MaxErrorRatio   float64                     `json:"max_error_ratio"`
	AchievedRate    float64                     `json:"achieved_rate"`
	TargetRate      float64                     `json:"target_rate,omitempty"` // rate mode only
	ByMethodStatus  map[string]map[string]int64 `json:"by_method_status"`
	TransportErrors int64                       `json:"transport_errors"`
	Latency         Latency                     `json:"latency_seconds"`
	// ScheduleLag is the generator's own delay from due time to send of on-time requests
	// (rate mode), excluded from Latency.
	ScheduleLag *Latency `json:"schedule_lag_seconds,omitempty"`
}

// quantiles reads h (microseconds). HDR reports the top of a value's bucket; never report
// more than the exact maximum.
func quantiles(h *hdrhistogram.Histogram, maxv time.Duration) Latency {
	q := h.ValueAtPercentiles([]float64{50, 90, 95, 99})
	quantile := func(p float64) float64 { return min(float64(q[p])/1e6, maxv.Seconds()) }
	return Latency{P50: quantile(50), P90: quantile(90), P95: quantile(95), P99: quantile(99), Max: maxv.Seconds()}
}

// Passed tells whether the error ratio stayed within the limit.
func (s Summary) Passed() bool { return s.ErrorRatio <= s.MaxErrorRatio }

// Summarize fills the counting fields of a summary for a traffic window of
// length elapsed.
func (s *Stats) Summarize(elapsed time.Duration) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{
		DurationSeconds: elapsed.Seconds(),
		Requests:        s.requests,
		Scheduled:       max(s.scheduled, s.requests),
		Late:            s.late,
		Dropped:         s.dropped,
		RateDelivered:   s.late == 0 && s.dropped == 0,
		Errors:          s.errors,
		TransportErrors: s.transportErrors,
		ByMethodStatus:  make(map[string]map[string]int64, len(s.byMethodStatus)),
	}
	for m, byStatus := range s.byMethodStatus {
		c := make(map[string]int64, len(byStatus))
		for k, v := range byStatus {
			c[k] = v
		}
		sum.ByMethodStatus[m] = c
	}
	if s.requests > 0 {
		sum.ErrorRatio = float64(s.errors) / float64(s.requests)
		sum.Latency = quantiles(s.total, s.max)
	}
	if s.lag.TotalCount() > 0 {
		lag := quantiles(s.lag, s.maxLag)
		sum.ScheduleLag = &lag
	}
	if elapsed > 0 {
		sum.AchievedRate = float64(s.requests) / elapsed.Seconds()
	}
	return sum
}
