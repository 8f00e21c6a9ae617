package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// InstrumentStore wraps s so that every operation is timed in
// storage_operation_duration_seconds{backend,operation,result}, and, when s reports its
// totals (storage.StatsReporter), exports storage_objects and storage_bytes, read at
// scrape time. Timing the store apart from HTTP shows a slow disk or object store apart
// from a slow client.
func InstrumentStore(s storage.Store, backend string, reg prometheus.Registerer) storage.Store {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "storage_operation_duration_seconds",
		Help:                            "Duration of storage backend operations, by backend, operation and result (ok, not_found, precondition_failed, error).",
		Buckets:                         DurationBuckets,
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: nativeMinResetDur,
		NativeHistogramMaxExemplars:     nativeMaxExemplars,
	}, []string{"backend", "operation", "result"})
	reg.MustRegister(hist)
	corruption := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storage_corruption_detected_total",
		Help: "Reads refused because the stored object failed verification against its stored checksum (storage.ErrCorrupt), by backend.",
	}, []string{"backend"})
	reg.MustRegister(corruption)
	is := &instrumentedStore{Store: s, ops: map[string]map[string]prometheus.Observer{},
		corruption: corruption.WithLabelValues(backend)}
	for _, op := range []string{"get", "put", "delete", "stat"} {
		is.ops[op] = map[string]prometheus.Observer{}
		for _, result := range []string{"ok", "not_found", "precondition_failed", "error"} {
			is.ops[op][result] = hist.WithLabelValues(backend, op, result)
		}
	}
	if sr, ok := s.(storage.StatsReporter); ok {
		reg.MustRegister(&statsCollector{
			sr: sr,
			objects: prometheus.NewDesc("storage_objects", "Objects currently stored.",
				nil, prometheus.Labels{"backend": backend}),
			bytes: prometheus.NewDesc("storage_bytes", "Bytes of object data currently stored.",
				nil, prometheus.Labels{"backend": backend}),
		})
	}
	return is
}

type instrumentedStore struct {
	storage.Store
	// ops[operation][result], created up front: no label hashing per operation, and
	// every series exists at zero from the start.
	ops map[string]map[string]prometheus.Observer
	// corruption counts ErrCorrupt from any operation, pre-created at 0 so that an alert
	// on its increase works from the first detection.
	corruption prometheus.Counter
}

// observe records an operation, with the trace id of a sampled request as exemplar.
func (s *instrumentedStore) observe(ctx context.Context, op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		result = "not_found"
	case errors.Is(err, storage.ErrPreconditionFailed):
		// A client's guard doing its job, not a backend failure.
		result = "precondition_failed"
	default:
		result = "error"
		if errors.Is(err, storage.ErrCorrupt) {
			s.corruption.Inc()
		}
	}
	var traceID string
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		traceID = sc.TraceID().String()
	}
	observe(s.ops[op][result], time.Since(start).Seconds(), traceID)
}

func (s *instrumentedStore) Put(ctx context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	start := time.Now()
	res, err := s.Store.Put(ctx, id, contentType, data, cond)
	s.observe(ctx, "put", start, err)
	return res, err
}

func (s *instrumentedStore) Get(ctx context.Context, id string) (*storage.Object, error) {
	start := time.Now()
	obj, err := s.Store.Get(ctx, id)
	s.observe(ctx, "get", start, err)
	return obj, err
}

func (s *instrumentedStore) Stat(ctx context.Context, id string) (storage.Info, error) {
	start := time.Now()
	info, err := s.Store.Stat(ctx, id)
	s.observe(ctx, "stat", start, err)
	return info, err
}

func (s *instrumentedStore) Delete(ctx context.Context, id string, cond storage.Condition) error {
	start := time.Now()
	err := s.Store.Delete(ctx, id, cond)
	s.observe(ctx, "delete", start, err)
	return err
}

// statsCollector reads the store's totals at scrape time rather than keeping gauges
// in step on every write.
type statsCollector struct {
	sr             storage.StatsReporter
	objects, bytes *prometheus.Desc
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.bytes
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.sr.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.objects, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(st.Objects))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
}
