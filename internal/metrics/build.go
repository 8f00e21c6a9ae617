package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry with the Go runtime and process collectors and
// storage_api_build_info{version,revision,goversion} = 1.
func NewRegistry(version, revision string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "storage_api_build_info",
			Help: "Always 1; the labels say which build is running.",
			ConstLabels: prometheus.Labels{
				"version": version, "revision": revision, "goversion": runtime.Version(),
			},
		}, func() float64 { return 1 }),
	)
	return reg
}
