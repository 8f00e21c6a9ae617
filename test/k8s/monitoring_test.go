package k8s

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// flatten returns the dotted paths of every leaf a values file sets (a list or an empty map is a leaf:
// it is set as a whole).
func flatten(prefix string, v any, out map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		out[prefix] = true
		return
	}
	for k, child := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		flatten(p, child, out)
	}
}

func TestFlatten(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"a: 1", []string{"a"}},
		{"a: {b: 1, c: {d: x}}", []string{"a.b", "a.c.d"}},
		{"a: {b: [1, 2], e: {}}", []string{"a.b", "a.e"}},
		{"grafana: {grafana.ini: {users: {allow_sign_up: false}}}", []string{"grafana.grafana.ini.users.allow_sign_up"}},
	}
	for _, tc := range cases {
		var v map[string]any
		if err := yaml.Unmarshal([]byte(tc.in), &v); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		flatten("", v, got)
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, " ") != strings.Join(tc.want, " ") {
			t.Errorf("flatten(%s) = %v, want %v", tc.in, keys, tc.want)
		}
	}
}

// TestMonitoringValuesDocumented: the kube-prometheus-stack values parse (duplicate keys are errors)
// and every key they set is documented in deploy/k8s/README.md as `dotted.path`.
func TestMonitoringValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(k8sDir, "kube-prometheus-stack-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(data, &values); err != nil {
		t.Fatalf("kube-prometheus-stack-values.yaml: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	flatten("", values, keys)
	if len(keys) < 10 {
		t.Fatalf("only %d keys found: parsing went wrong", len(keys))
	}
	for k := range keys {
		if !strings.Contains(string(readme), "`"+k+"`") {
			t.Errorf("deploy/k8s/README.md does not document `%s`", k)
		}
	}
	// Values the rest of the setup relies on.
	for path, want := range map[string]any{
		"grafana.sidecar.datasources.uid":                                   "prometheus",
		"grafana.sidecar.dashboards.label":                                  "grafana_dashboard",
		"grafana.sidecar.dashboards.labelValue":                             "1",
		"grafana.admin.existingSecret":                                      "grafana-admin",
		"prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues": false,
		"prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues":           false,
	} {
		if got := lookup(values, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if lookup(values, "grafana.adminPassword") != nil {
		t.Errorf("grafana.adminPassword must not be set in git: use the grafana-admin Secret")
	}
}

func lookup(v map[string]any, path string) any {
	var cur any = v
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// TestKindScriptPins: up.sh pins every chart and image version, and the README names the same
// kube-prometheus-stack version.
func TestKindScriptPins(t *testing.T) {
	up, err := os.ReadFile(filepath.Join(k8sDir, "up.sh"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, re := range map[string]*regexp.Regexp{
		"KUBE_PROMETHEUS_STACK_VERSION": regexp.MustCompile(`(?m)^KUBE_PROMETHEUS_STACK_VERSION=(\d+\.\d+\.\d+)$`),
		"KIND_VERSION":                  regexp.MustCompile(`(?m)^KIND_VERSION=(v\d+\.\d+\.\d+)$`),
		"KIND_NODE_IMAGE":               regexp.MustCompile(`(?m)^KIND_NODE_IMAGE="(kindest/node:v[\d.]+@sha256:[0-9a-f]{64})"$`),
	} {
		m := re.FindSubmatch(up)
		if m == nil {
			t.Errorf("up.sh does not pin %s (want %s)", name, re)
			continue
		}
		if name == "KUBE_PROMETHEUS_STACK_VERSION" && !strings.Contains(string(readme), string(m[1])) {
			t.Errorf("README.md does not mention kube-prometheus-stack %s", m[1])
		}
	}
	// Every chart fetched from a repository names its version.
	if r, v := strings.Count(string(up), "--repo "), strings.Count(string(up), "--version "); r == 0 || r != v {
		t.Errorf("up.sh: %d charts fetched with --repo but %d --version flags", r, v)
	}
}

// TestCRDVersionInStep: the server-side check generates its CRDs from the same prometheus-operator
// API version the offline tests decode with.
func TestCRDVersionInStep(t *testing.T) {
	re := regexp.MustCompile(`github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring (v\S+)`)
	var versions []string
	for _, f := range []string{"go.mod", filepath.Join("apiserver", "crdgen", "go.mod")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s does not require the monitoring API", f)
		}
		versions = append(versions, string(m[1]))
	}
	if versions[0] != versions[1] {
		t.Errorf("monitoring API %s in test/k8s but %s in apiserver/crdgen", versions[0], versions[1])
	}
}
