package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sre-instrumentation/storage-api/internal/admission"
)

// Reasons a request is refused or cut short to protect the server: the reason label
// of storage_api_requests_refused_total. All are created at zero.
const (
	// RefusedInflightBytes: its body did not fit in the memory budget (-max-inflight-bytes).
	RefusedInflightBytes = "inflight_bytes"
	// RefusedConnections: it arrived on an overflow connection, over -max-connections.
	RefusedConnections = "connections"
	// RefusedTooSlow: its body moved slower than -min-transfer-rate.
	RefusedTooSlow = "too_slow"
)

// Admission holds the metrics of admission control: what was refused and why, and how
// full the budgets are.
type Admission struct {
	refused *prometheus.CounterVec
}

// NewAdmission registers the admission metrics on reg. budget and conns may be nil
// (that limit is off); their gauges are then not exported.
func NewAdmission(reg prometheus.Registerer, budget *admission.Budget, conns *admission.ConnLimiter) *Admission {
	m := &Admission{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storage_api_requests_refused_total",
		Help: "Requests refused (503 or 408) or cut short to protect the server's memory and connections, by reason: inflight_bytes, connections, too_slow.",
	}, []string{"reason"})}
	for _, r := range []string{RefusedInflightBytes, RefusedConnections, RefusedTooSlow} {
		m.refused.WithLabelValues(r)
	}
	reg.MustRegister(m.refused)
	if budget != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "storage_api_inflight_body_bytes",
				Help: "Bytes of request and response bodies held in memory now, as charged against -max-inflight-bytes.",
			}, func() float64 { return float64(budget.InUse()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "storage_api_inflight_body_bytes_limit",
				Help: "The memory budget for bodies in flight (-max-inflight-bytes).",
			}, func() float64 { return float64(budget.Limit()) }),
		)
	}
	if conns != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "storage_api_connections_open",
				Help: "Client connections open now, overflow connections included.",
			}, func() float64 { return float64(conns.Open()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "storage_api_connections_limit",
				Help: "The connection limit (-max-connections), without the overflow reserve kept for probes.",
			}, func() float64 { return float64(conns.Max()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "storage_api_connections_evicted_total",
				Help: "Idle connections closed to make room for new ones at the connection limit.",
			}, func() float64 { return float64(conns.Evicted()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "storage_api_connections_rejected_total",
				Help: "Connections closed as soon as they were accepted: the limit and its reserve were all busy.",
			}, func() float64 { return float64(conns.Rejected()) }),
		)
	}
	return m
}

// Refused counts one refusal; reason is one of the Refused* constants.
func (m *Admission) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }
