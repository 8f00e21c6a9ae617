package deploy_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/grafana"
)

// The SLO period is the longest range the rules read: the [30d] of storage_api:sli_*:ratio_30d. Every
// Prometheus this repository ships must keep at least that much, plus this margin (the recorded series those
// rules sum are themselves 5-minute rates, and a window that just fits loses its oldest block first).
const retentionMargin = 1.10

// rangeSelector matches a PromQL range or subquery selector with a literal duration: [30d], [1h30m], [30d:5m].
// Grafana's [$__rate_interval] and friends have no literal duration and scale with the zoom, so they are not
// retention requirements.
var rangeSelector = regexp.MustCompile(`\[((?:[0-9]+(?:ms|[smhdwy]))+)(?::(?:[0-9]+(?:ms|[smhdwy]))*)?\]`)

// promDuration parses a Prometheus duration (units ms, s, m, h, d=24h, w=7d, y=365d; several may follow each
// other, largest first, as in 1h30m).
func promDuration(s string) (time.Duration, error) {
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
		"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour}
	part := regexp.MustCompile(`^([0-9]+)(ms|[smhdwy])`)
	var total time.Duration
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	for s != "" {
		m := part.FindStringSubmatch(s)
		if m == nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return 0, err
		}
		total += time.Duration(n) * units[m[2]]
		s = s[len(m[0]):]
	}
	return total, nil
}

// longestRange returns the longest literal range selector in text and the text of that selector.
func longestRange(t *testing.T, text string) (time.Duration, string) {
	t.Helper()
	var longest time.Duration
	var which string
	for _, m := range rangeSelector.FindAllStringSubmatch(text, -1) {
		d, err := promDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if d > longest {
			longest, which = d, m[0]
		}
	}
	return longest, which
}

func TestRangeScanner(t *testing.T) {
	for _, c := range []struct {
		text string
		want time.Duration
	}{
		{`rate(x[5m])`, 5 * time.Minute},
		{`sum_over_time(x[30d]) / sum_over_time(y[3d])`, 30 * 24 * time.Hour},
		{`max_over_time(x[1h30m:1m])`, 90 * time.Minute},
		{`rate(x[$__rate_interval])`, 0},
		{`x{path="/api/buckets/{id}"}[2w]`, 14 * 24 * time.Hour},
		{`x[500ms]`, 500 * time.Millisecond},
	} {
		if got, _ := longestRange(t, c.text); got != c.want {
			t.Errorf("longestRange(%s) = %v, want %v", c.text, got, c.want)
		}
	}
	for _, bad := range []string{"", "5", "5x", "m5"} {
		if _, err := promDuration(bad); err == nil {
			t.Errorf("promDuration(%q) accepted", bad)
		}
	}
}

// TestRetentionCoversSLOWindows reads every range selector of the rules and the dashboard and requires each
// Prometheus this repository ships (compose, and the kube-prometheus-stack values) to keep at least the
// longest of them plus the margin, with a size bound; and the dashboard's titles to name that window.
func TestRetentionCoversSLOWindows(t *testing.T) {
	var queries strings.Builder
	rules, err := filepath.Glob(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rule files (err %v)", err)
	}
	for _, f := range rules {
		// Comments may name windows too; only expressions count.
		for _, line := range strings.Split(readFile(t, strings.TrimPrefix(f, root+"/")), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				queries.WriteString(line + "\n")
			}
		}
	}
	d, _ := loadDashboard(t)
	for _, p := range grafana.Flatten(d.Panels) {
		for _, tg := range p.Targets {
			queries.WriteString(tg.Expr + "\n")
		}
	}
	period, sel := longestRange(t, queries.String())
	if period < 24*time.Hour {
		t.Fatalf("longest range selector is %s; the SLO rules should read a 30-day window", sel)
	}
	need := time.Duration(float64(period) * retentionMargin)
	t.Logf("longest range selector %s: every shipped Prometheus must keep at least %v", sel, need)

	check := func(where, value string) {
		t.Helper()
		got, err := promDuration(value)
		if err != nil {
			t.Errorf("%s: retention %q: %v", where, value, err)
			return
		}
		if got < need {
			t.Errorf("%s keeps %s, shorter than the rules' and dashboard's %s plus margin (%v): the SLO panels "+
				"and alerts would cover less than their window", where, value, sel, need)
		}
	}

	compose := readFile(t, "docker-compose.yml")
	m := regexp.MustCompile(`--storage\.tsdb\.retention\.time=\$\{PROMETHEUS_RETENTION:-([0-9a-z]+)\}`).FindStringSubmatch(compose)
	if m == nil {
		t.Error("docker-compose.yml: no --storage.tsdb.retention.time=${PROMETHEUS_RETENTION:-<default>}")
	} else {
		check("docker-compose.yml (PROMETHEUS_RETENTION default)", m[1])
	}
	if !regexp.MustCompile(`--storage\.tsdb\.retention\.size=\$\{PROMETHEUS_RETENTION_SIZE:-[0-9]+[KMGT]?B\}`).MatchString(compose) {
		t.Error("docker-compose.yml: no --storage.tsdb.retention.size=${PROMETHEUS_RETENTION_SIZE:-<bytes>}: a laptop disk needs a bound")
	}

	kps := readFile(t, "deploy/k8s/kube-prometheus-stack-values.yaml")
	m = regexp.MustCompile(`(?m)^    retention: ([0-9a-z]+)$`).FindStringSubmatch(kps)
	if m == nil {
		t.Error("kube-prometheus-stack values: no prometheus.prometheusSpec.retention")
	} else {
		check("deploy/k8s/kube-prometheus-stack-values.yaml (prometheusSpec.retention)", m[1])
	}
	if !regexp.MustCompile(`(?m)^    retentionSize: [0-9]+[KMGT]?B$`).MatchString(kps) {
		t.Error("kube-prometheus-stack values: no prometheus.prometheusSpec.retentionSize")
	}

	// Titles name the window the numbers cover: the SLO period, in days.
	days := fmt.Sprintf("%dd", period/(24*time.Hour))
	titled := regexp.MustCompile(`\(([0-9]+)(d|-day window)\)`)
	n := 0
	for _, p := range grafana.Flatten(d.Panels) {
		for _, m := range titled.FindAllStringSubmatch(p.Title, -1) {
			n++
			if m[1]+"d" != days {
				t.Errorf("panel %q says %s%s; the SLO period the rules read is %s", p.Title, m[1], m[2], days)
			}
		}
	}
	if n == 0 {
		t.Errorf("no panel title names the SLO period (%s)", days)
	}
}
