// Package crdgen pins controller-gen and the prometheus-operator monitoring API from which
// ../install.sh generates the ServiceMonitor and PrometheusRule CRDs. Keep the monitoring version
// equal to test/k8s's (a test there checks it). A module of its own so its dependency versions do
// not change the kube-apiserver build.
package crdgen

import (
	// Pins the monitoring API in this module's go.mod; nothing here calls it.
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
