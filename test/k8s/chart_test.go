package k8s

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	appUID     = 65532
	appVersion = "0.1.0" // Chart.yaml appVersion; TestChartMetadata keeps the two in step
)

// Every optional feature with the single-node (bolt) store; autoscaling needs s3, see allOnS3.
var allOnBolt = []string{
	"--set", "persistence.enabled=true",
	"--set", "podDisruptionBudget.enabled=true",
	"--set", "podDisruptionBudget.maxUnavailable=1",
	"--set", "networkPolicy.enabled=true",
	"--set", "loadgen.enabled=true",
	"--set", "serviceMonitor.enabled=true",
	"--set", "serviceMonitor.labels.release=monitoring",
	"--set", "prometheusRule.enabled=true",
	"--set", "prometheusRule.labels.release=monitoring",
	"--set", "grafanaDashboard.enabled=true",
}

var s3Base = []string{
	"--set", "storage.backend=s3",
	"--set", "storage.s3.bucket=objects",
	"--set", "storage.s3.endpoint=http://minio.storage.svc:9000",
	"--set", "storage.s3.pathStyle=true",
	"--set", "storage.s3.credentialsSecret.name=s3-credentials",
}

var allOnS3 = append(slices.Clone(s3Base),
	"--set", "autoscaling.enabled=true",
	"--set", "podDisruptionBudget.enabled=true",
	"--set", "networkPolicy.enabled=true",
	"--set", "loadgen.enabled=true",
	"--set", "serviceMonitor.enabled=true",
	"--set", "prometheusRule.enabled=true",
	"--set", "grafanaDashboard.enabled=true",
)

type renderCase struct {
	name string
	crds bool // render with the monitoring.coreos.com/v1 API present
	args []string
	// Expected object counts per kind (exactly; a kind not listed must be absent).
	want map[string]int
	// Optional extra checks on this case's objects.
	check func(t *testing.T, objs []object)
}

func ruleFileCount(t *testing.T) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	return len(files)
}

func TestChartRenders(t *testing.T) {
	nRules := ruleFileCount(t)
	cases := []renderCase{
		{
			// The default store is bolt, durable: its data lives on a PersistentVolumeClaim, not in the pod.
			name: "defaults",
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "PersistentVolumeClaim": 1},
			check: func(t *testing.T, objs []object) {
				d := ofKind[*appsv1.Deployment](objs)[0]
				if got := *d.Spec.Replicas; got != 1 {
					t.Errorf("default replicas = %d, want 1 (bolt is single-writer)", got)
				}
				if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/sre-instrumentation/storage-api:"+appVersion {
					t.Errorf("default image = %q, want the chart's appVersion %s as tag", img, appVersion)
				}
				pvc := ofKind[*corev1.PersistentVolumeClaim](objs)[0]
				if v := d.Spec.Template.Spec.Volumes[0]; v.Name != "data" || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != pvc.Name {
					t.Errorf("by default /data must be the claim %s, got %+v", pvc.Name, v)
				}
				if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("bolt on a PVC needs strategy Recreate (file lock), got %q", d.Spec.Strategy.Type)
				}
				if len(d.Spec.Template.Spec.TopologySpreadConstraints) != 0 {
					t.Errorf("one bolt replica has nothing to spread: %+v", d.Spec.Template.Spec.TopologySpreadConstraints)
				}
				svc := ofKind[*corev1.Service](objs)[0]
				for k, want := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "5000", "prometheus.io/path": "/metrics"} {
					if got := svc.Annotations[k]; got != want {
						t.Errorf("Service annotation %s = %q, want %q", k, got, want)
					}
				}
			},
		},
		{
			// Persistence off: an emptyDir, but a bounded one.
			name:  "bolt without persistence",
			args:  []string{"--set", "persistence.enabled=false"},
			want:  map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1},
			check: checkBoundedEmptyDir,
		},
		{
			// memory keeps nothing on disk worth a claim; its /data is a bounded emptyDir too.
			name:  "memory backend",
			args:  []string{"--set", "storage.backend=memory"},
			want:  map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1},
			check: checkBoundedEmptyDir,
		},
		{
			// Monitoring switched on but the CRDs absent: the chart must not emit objects the cluster rejects.
			name: "monitoring on, no CRD API",
			args: []string{"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"},
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "ConfigMap": 1, "PersistentVolumeClaim": 1},
		},
		{
			name: "monitoring on, CRD API present",
			crds: true,
			args: []string{"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"},
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "ServiceMonitor": 1, "PrometheusRule": nRules, "PersistentVolumeClaim": 1},
		},
		{
			name: "all features, bolt",
			crds: true,
			args: allOnBolt,
			want: map[string]int{
				"ServiceAccount": 1, "Service": 2, "Deployment": 2, "PersistentVolumeClaim": 1,
				"PodDisruptionBudget": 1, "NetworkPolicy": 2, "ServiceMonitor": 2, "PrometheusRule": nRules, "ConfigMap": 1,
			},
			check: func(t *testing.T, objs []object) {
				d := findDeployment(t, objs, "storage-api")
				if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("bolt on a PVC needs strategy Recreate (file lock), got %q", d.Spec.Strategy.Type)
				}
				pvc := ofKind[*corev1.PersistentVolumeClaim](objs)[0]
				if got := d.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim; got == nil || got.ClaimName != pvc.Name {
					t.Errorf("data volume should use the claim %s, got %+v", pvc.Name, d.Spec.Template.Spec.Volumes[0])
				}
				for _, sm := range ofKind[*monitoringv1.ServiceMonitor](objs) {
					if sm.Spec.ScrapeNativeHistograms == nil || !*sm.Spec.ScrapeNativeHistograms || sm.Spec.ScrapeClassicHistograms == nil || !*sm.Spec.ScrapeClassicHistograms {
						t.Errorf("ServiceMonitor %s must scrape native and classic histograms, like compose", sm.Name)
					}
					if sm.Labels["release"] != "monitoring" {
						t.Errorf("ServiceMonitor %s lacks the extra label release=monitoring", sm.Name)
					}
				}
				for _, pr := range ofKind[*monitoringv1.PrometheusRule](objs) {
					if pr.Labels["release"] != "monitoring" {
						t.Errorf("PrometheusRule %s lacks the extra label release=monitoring", pr.Name)
					}
				}
			},
		},
		{
			name: "older prometheus-operator",
			crds: true,
			args: []string{"--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.nativeHistograms=false"},
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "ServiceMonitor": 1, "PersistentVolumeClaim": 1},
			check: func(t *testing.T, objs []object) {
				sm := ofKind[*monitoringv1.ServiceMonitor](objs)[0]
				if sm.Spec.ScrapeNativeHistograms != nil || sm.Spec.ScrapeClassicHistograms != nil {
					t.Errorf("nativeHistograms=false must leave out the fields an older CRD lacks")
				}
			},
		},
		{
			name: "all features, s3",
			crds: true,
			args: allOnS3,
			want: map[string]int{
				"ServiceAccount": 1, "Service": 2, "Deployment": 2, "HorizontalPodAutoscaler": 1,
				"PodDisruptionBudget": 1, "NetworkPolicy": 2, "ServiceMonitor": 2, "PrometheusRule": nRules, "ConfigMap": 1,
			},
			check: func(t *testing.T, objs []object) {
				d := findDeployment(t, objs, "storage-api")
				if d.Spec.Replicas != nil {
					t.Errorf("with an HPA the Deployment must leave replicas to it, got %d", *d.Spec.Replicas)
				}
				checkS3Env(t, d)
				checkSpread(t, d)
			},
		},
		{
			// s3 lifts the single-replica limit and switches HPA and PDB on by itself.
			name: "s3 backend defaults",
			args: s3Base,
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1},
			check: func(t *testing.T, objs []object) {
				d := ofKind[*appsv1.Deployment](objs)[0]
				checkSpread(t, d)
				checkBoundedEmptyDir(t, objs)
			},
		},
		{
			name: "s3 backend, 3 fixed replicas",
			args: append(slices.Clone(s3Base), "--set", "replicaCount=3", "--set", "autoscaling.enabled=false"),
			want: map[string]int{"ServiceAccount": 1, "Service": 1, "Deployment": 1, "PodDisruptionBudget": 1},
			check: func(t *testing.T, objs []object) {
				d := ofKind[*appsv1.Deployment](objs)[0]
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
					t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
				}
				checkSpread(t, d)
			},
		},
		{
			// The values up.sh installs on kind.
			name: "kind values",
			crds: true,
			args: []string{"--values", filepath.Join(k8sDir, "storage-api-values.yaml")},
			want: map[string]int{
				"ServiceAccount": 1, "Service": 2, "Deployment": 2, "PersistentVolumeClaim": 1,
				"PodDisruptionBudget": 1, "NetworkPolicy": 2, "ServiceMonitor": 2, "PrometheusRule": nRules, "ConfigMap": 1,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := renderChart(chartDir, tc.crds, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeManifests(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := kindCounts(objs); !reflect.DeepEqual(got, dropZero(tc.want)) {
				t.Errorf("rendered kinds = %v, want %v", got, dropZero(tc.want))
			}
			checkCommon(t, objs)
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

func dropZero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestChartRefuses: combinations the chart must refuse with a message that says what to change.
func TestChartRefuses(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // part of helm's error
	}{
		{"bolt with 2 replicas", []string{"--set", "replicaCount=2"}, "replicaCount=2 needs a shared store: the bolt backend"},
		{"memory with 2 replicas", []string{"--set", "storage.backend=memory", "--set", "replicaCount=2"}, "replicaCount=2 needs a shared store: the memory backend"},
		{"bolt with autoscaling", []string{"--set", "autoscaling.enabled=true"}, "autoscaling.enabled=true needs a shared store: the bolt backend"},
		{"latest tag", []string{"--set", "image.tag=latest"}, `image.tag must not be "latest"`},
		{"unknown top-level key", []string{"--set", "bogus=1"}, "bogus"},
		{"unknown nested key", []string{"--set", "storage.bogus=1"}, "bogus"},
		{"wrong type", []string{"--set", "replicaCount=one"}, "replicaCount"},
		{"unknown backend", []string{"--set", "storage.backend=disk"}, "backend"},
		{"s3 without bucket", []string{"--set", "storage.backend=s3"}, "storage.s3.bucket"},
		{"s3 with persistence", append(slices.Clone(s3Base), "--set", "persistence.enabled=true"), "persistence.enabled=true has no use"},
		{"grace below drain", []string{"--set", "terminationGracePeriodSeconds=5"}, "must exceed config.shutdownDelaySeconds + config.shutdownTimeoutSeconds"},
		{"budget below object size", []string{"--set", "admission.maxInflightBytes=1048576"}, "admission.maxInflightBytes (1048576) must be at least storage.maxObjectSize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := renderChart(chartDir, true, tc.args...)
			if err == nil {
				t.Fatalf("helm template succeeded, want an error containing %q; output:\n%.400s", tc.want, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestChartLintStrict(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"all features, bolt", allOnBolt},
		{"all features, s3", allOnS3},
		{"kind values", []string{"--values", filepath.Join(k8sDir, "storage-api-values.yaml")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := lintChart(chartDir, tc.args...); err != nil {
				t.Fatalf("helm lint --strict: %v", err)
			}
		})
	}
}

// TestChartPackage: helm package must follow the files/ symlinks into the shared rule and dashboard
// files, so the packaged chart renders exactly what the chart directory renders.
func TestChartPackage(t *testing.T) {
	dest := t.TempDir()
	tgz, err := packageChart(chartDir, dest)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dest, "storage-api-0.1.0.tgz"); tgz != want {
		t.Errorf("packaged as %s, want %s", tgz, want)
	}
	fromDir, err := renderChart(chartDir, true, allOnBolt...)
	if err != nil {
		t.Fatal(err)
	}
	fromTgz, err := renderChart(tgz, true, allOnBolt...)
	if err != nil {
		t.Fatal(err)
	}
	if fromDir != fromTgz {
		t.Errorf("the packaged chart renders differently from the chart directory (symlinked files lost?)")
	}
	if !strings.Contains(fromTgz, "kind: PrometheusRule") || !strings.Contains(fromTgz, "storage-api.json") {
		t.Errorf("the packaged chart lacks the rule files or the dashboard")
	}
}

// TestSingleSourceOfTruth: the chart reads the compose stack's files through symlinks, not copies.
func TestSingleSourceOfTruth(t *testing.T) {
	for link, want := range map[string]string{
		filepath.Join(chartDir, "files", "rules"):      rulesDir,
		filepath.Join(chartDir, "files", "dashboards"): dashDir,
	} {
		fi, err := os.Lstat(link)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s must be a symlink to %s, not a copy", link, want)
			continue
		}
		got, err := filepath.EvalSymlinks(link)
		if err != nil {
			t.Fatalf("%s: %v", link, err)
		}
		if got != want {
			t.Errorf("%s resolves to %s, want %s", link, got, want)
		}
	}
}

// TestPrometheusRuleEqualsRuleFiles: each compose rule file becomes one PrometheusRule whose groups
// equal the file's groups once both are parsed.
func TestPrometheusRuleEqualsRuleFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no rule files in %s: the chart would ship no alerts", rulesDir)
	}
	out, err := renderChart(chartDir, true, "--set", "prometheusRule.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[string]object{}
	for _, o := range objs {
		if o.Kind == "PrometheusRule" {
			bySource[o.Meta.Annotations["storage-api/source"]] = o
		}
	}
	if len(bySource) != len(files) {
		t.Errorf("%d PrometheusRules for %d rule files", len(bySource), len(files))
	}
	for _, f := range files {
		src := "deploy/prometheus/rules/" + filepath.Base(f)
		o, ok := bySource[src]
		if !ok {
			t.Errorf("no PrometheusRule for %s", src)
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Typed: the file must itself be a valid PrometheusRule spec (strictly), equal to the rendered one.
		var fileSpec monitoringv1.PrometheusRuleSpec
		if err := strictYAML(data, &fileSpec); err != nil {
			t.Errorf("%s is not a valid PrometheusRule spec: %v", src, err)
			continue
		}
		rendered := o.Obj.(*monitoringv1.PrometheusRule)
		if len(fileSpec.Groups) == 0 {
			t.Errorf("%s has no groups", src)
		}
		if !reflect.DeepEqual(fileSpec, rendered.Spec) {
			t.Errorf("PrometheusRule %s differs from %s", o.Name, src)
		}
		// Untyped too, so a field the typed struct might drop cannot hide a difference.
		var fileAny, renderedAny struct {
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(data, &fileAny.Spec); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(o.Raw, &renderedAny); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fileAny.Spec, renderedAny.Spec) {
			t.Errorf("PrometheusRule %s: parsed spec differs from %s", o.Name, src)
		}
	}
}

// TestDashboardConfigMapEqualsComposeDashboard: the ConfigMap carries the compose dashboards unchanged.
func TestDashboardConfigMapEqualsComposeDashboard(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dashDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, filepath.Join(dashDir, "storage-api.json")) {
		t.Fatalf("%s/storage-api.json is missing", dashDir)
	}
	out, err := renderChart(chartDir, false, "--set", "grafanaDashboard.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	cms := ofKind[*corev1.ConfigMap](objs)
	if len(cms) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(cms))
	}
	cm := cms[0]
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf(`dashboard ConfigMap lacks the label grafana_dashboard: "1" (labels %v)`, cm.Labels)
	}
	if len(cm.Data) != len(files) {
		t.Errorf("ConfigMap holds %d dashboards, the compose folder %d", len(cm.Data), len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := cm.Data[filepath.Base(f)]
		if !ok {
			t.Errorf("ConfigMap lacks %s", filepath.Base(f))
			continue
		}
		var wantJSON, gotJSON any
		if err := json.Unmarshal(want, &wantJSON); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := json.Unmarshal([]byte(got), &gotJSON); err != nil {
			t.Fatalf("ConfigMap %s is not JSON: %v", filepath.Base(f), err)
		}
		if !reflect.DeepEqual(wantJSON, gotJSON) {
			t.Errorf("ConfigMap %s differs from %s", filepath.Base(f), f)
		}
		if !bytes.Equal(bytes.TrimSpace(want), bytes.TrimSpace([]byte(got))) {
			t.Errorf("ConfigMap %s is not byte-identical to %s", filepath.Base(f), f)
		}
	}
	if d, ok := cm.Data["storage-api.json"]; ok {
		var dash struct {
			UID string `json:"uid"`
		}
		if err := json.Unmarshal([]byte(d), &dash); err != nil || dash.UID != "storage-api" {
			t.Errorf(`dashboard uid = %q (%v), want "storage-api"`, dash.UID, err)
		}
	}
}

// TestChartMetadata keeps appVersion, the default tag expectation above and the README line in step.
func TestChartMetadata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		APIVersion  string   `json:"apiVersion"`
		Name        string   `json:"name"`
		Version     string   `json:"version"`
		AppVersion  string   `json:"appVersion"`
		KubeVersion string   `json:"kubeVersion"`
		Type        string   `json:"type"`
		Description string   `json:"description"`
		Keywords    []string `json:"keywords"`
		Home        string   `json:"home"`
		Sources     []string `json:"sources"`
	}
	if err := strictYAML(data, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.AppVersion != appVersion || chart.Name != "storage-api" || chart.APIVersion != "v2" {
		t.Errorf("Chart.yaml: name %q apiVersion %q appVersion %q; the tests expect storage-api, v2, %s", chart.Name, chart.APIVersion, chart.AppVersion, appVersion)
	}
}

// ---- checks applied to every successful render ----

func checkCommon(t *testing.T, objs []object) {
	t.Helper()
	for _, o := range objs {
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if o.Meta.Labels[k] == "" {
				t.Errorf("%s %s lacks label %s", o.Kind, o.Name, k)
			}
		}
	}
	deps := ofKind[*appsv1.Deployment](objs)
	for _, d := range deps {
		checkDeployment(t, d)
	}
	checkServices(t, objs, deps)
	checkSelectors(t, objs, deps)
	for _, sa := range ofKind[*corev1.ServiceAccount](objs) {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s must not automount its token", sa.Name)
		}
	}
}

// checkDeployment: Pod Security Standards "restricted", probes, resources, pinned image, grace period.
func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	sel, err := labelsSelector(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Deployment %s: selector %v does not match its pod labels %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("Deployment %s: the pod must not mount a service account token", d.Name)
	}
	psc := pod.SecurityContext
	if psc == nil {
		t.Fatalf("Deployment %s: no pod securityContext", d.Name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("Deployment %s: host namespaces are not allowed under restricted", d.Name)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("Deployment %s: hostPath volume %s", d.Name, v.Name)
		}
	}
	containers := append(slices.Clone(pod.InitContainers), pod.Containers...)
	if len(pod.Containers) == 0 {
		t.Fatalf("Deployment %s has no containers", d.Name)
	}
	for _, c := range containers {
		where := d.Name + "/" + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", where)
			continue
		}
		if !boolOr(sc.RunAsNonRoot, psc.RunAsNonRoot) {
			t.Errorf("%s: runAsNonRoot must be true", where)
		}
		if uid := int64Or(sc.RunAsUser, psc.RunAsUser); uid != appUID {
			t.Errorf("%s: runAsUser = %d, want %d", where, uid, appUID)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: capabilities must drop ALL", where)
		} else if len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: adds capabilities %v", where, sc.Capabilities.Add)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil {
			t.Errorf("%s: needs liveness, readiness and startup probes", where)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
				t.Errorf("%s: no %s request", where, r)
			}
		}
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
			t.Errorf("%s: no memory limit", where)
		}
		// Logs and emptyDirs use the node's disk: bounded and accounted for, like memory.
		req, lim := c.Resources.Requests[corev1.ResourceEphemeralStorage], c.Resources.Limits[corev1.ResourceEphemeralStorage]
		if req.IsZero() || lim.IsZero() || lim.Cmp(req) < 0 {
			t.Errorf("%s: ephemeral-storage request %s, limit %s: want both, limit >= request", where, req.String(), lim.String())
		}
		for _, v := range pod.Volumes {
			if v.EmptyDir != nil && (v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Cmp(lim) > 0) {
				t.Errorf("%s: emptyDir %s size limit %v: want one, within the ephemeral-storage limit %s", where, v.Name, v.EmptyDir.SizeLimit, lim.String())
			}
		}
		checkImage(t, where, c.Image)
		seen := map[string]bool{}
		for _, e := range c.Env {
			if seen[e.Name] {
				t.Errorf("%s: env %s set twice", where, e.Name)
			}
			seen[e.Name] = true
		}
	}
	if api := containerNamed(pod.Containers, "storage-api"); api != nil {
		checkAPIContainer(t, d, api)
	}
	if lg := containerNamed(pod.Containers, "loadgen"); lg != nil {
		// loadgen serves /healthz and /metrics on its metrics port: HTTP probes see a hung process, a TCP one
		// does not. Readiness is what Prometheus needs from it, /metrics.
		for _, p := range []struct {
			name, path string
			probe      *corev1.Probe
		}{{"liveness", "/healthz", lg.LivenessProbe}, {"startup", "/healthz", lg.StartupProbe}, {"readiness", "/metrics", lg.ReadinessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("metrics") {
				t.Errorf("loadgen %s probe should GET %s on port metrics, got %+v", p.name, p.path, p.probe)
			}
		}
	}
}

// checkBoundedEmptyDir: /data is an emptyDir with a size limit (checkDeployment checks it fits the
// ephemeral-storage limit) and no claim is rendered.
func checkBoundedEmptyDir(t *testing.T, objs []object) {
	t.Helper()
	d := findDeployment(t, objs, "storage-api")
	v := d.Spec.Template.Spec.Volumes[0]
	if v.Name != "data" || v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero() {
		t.Errorf("/data must be an emptyDir with a sizeLimit, got %+v", v)
	}
	if n := len(ofKind[*corev1.PersistentVolumeClaim](objs)); n != 0 {
		t.Errorf("%d PersistentVolumeClaims rendered without persistence", n)
	}
}

// checkSpread: stateless replicas spread across nodes, selecting exactly the API's pods.
func checkSpread(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if c.TopologyKey != "kubernetes.io/hostname" {
			continue
		}
		sel, err := labelsSelector(c.LabelSelector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) || c.MaxSkew != 1 {
			t.Errorf("hostname spread %+v must select the API pods with maxSkew 1", c)
		}
		return
	}
	t.Errorf("Deployment %s: s3 replicas need a topologySpreadConstraint on kubernetes.io/hostname, got %+v", d.Name, d.Spec.Template.Spec.TopologySpreadConstraints)
}

func checkAPIContainer(t *testing.T, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 5000 {
		t.Errorf("API container ports = %+v, want one port http/5000", c.Ports)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz", c.StartupProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("API probe should GET %s on port http, got %+v", path, probe)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	// The Go soft memory limit follows the container's memory limit (docs/reliability.md).
	memLimit := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "MEMORY_LIMIT" })
	if memLimit < 0 || c.Env[memLimit].ValueFrom == nil || c.Env[memLimit].ValueFrom.ResourceFieldRef == nil ||
		c.Env[memLimit].ValueFrom.ResourceFieldRef.Resource != "limits.memory" || c.Env[memLimit].ValueFrom.ResourceFieldRef.ContainerName != c.Name {
		t.Errorf("API container must set MEMORY_LIMIT from its own limits.memory (downward API)")
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("API container has no memory limit: the admission defaults are sized for one")
	}
	if inflight, err := strconv.ParseInt(env["MAX_INFLIGHT_BYTES"], 10, 64); err != nil || inflight >= c.Resources.Limits.Memory().Value()/2 {
		t.Errorf("MAX_INFLIGHT_BYTES %q must be set and well under the memory limit %v", env["MAX_INFLIGHT_BYTES"], c.Resources.Limits.Memory())
	}
	for _, k := range []string{"STORAGE_BACKEND", "DATA_DIR", "MAX_OBJECT_SIZE", "LOG_LEVEL", "SHUTDOWN_TIMEOUT", "FAULT_ERROR_RATIO", "FAULT_LATENCY", "FAULT_LATENCY_RATIO",
		"MAX_CONNECTIONS", "MIN_TRANSFER_RATE", "TRANSFER_GRACE"} {
		if _, ok := env[k]; !ok {
			t.Errorf("API container lacks env %s", k)
		}
	}
	if env["DATA_DIR"] != "/data" {
		t.Errorf("DATA_DIR = %q, want /data", env["DATA_DIR"])
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/data" && m.Name == "data" }) {
		t.Errorf("API container must mount the data volume at /data (the only writable data path)")
	}
	var drain time.Duration
	for _, k := range []string{"SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT"} {
		v, err := time.ParseDuration(env[k])
		if err != nil {
			t.Fatalf("%s %q: %v", k, env[k], err)
		}
		drain += v
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= drain {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the drain (delay + timeout) %s", grace, drain)
	}
}

func checkS3Env(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	c := containerNamed(d.Spec.Template.Spec.Containers, "storage-api")
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["STORAGE_BACKEND"].Value != "s3" || env["S3_BUCKET"].Value != "objects" || env["S3_PATH_STYLE"].Value != "true" {
		t.Errorf("s3 env not mapped: %+v", c.Env)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		e := env[k]
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "s3-credentials" || e.ValueFrom.SecretKeyRef.Key != k {
			t.Errorf("%s must come from Secret s3-credentials key %s, got %+v", k, k, e)
		}
	}
}

func checkImage(t *testing.T, where, image string) {
	t.Helper()
	ref := image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		t.Errorf("%s: image %q has no tag", where, image)
		return
	}
	if tag := ref[i+1:]; tag == "" || tag == "latest" {
		t.Errorf("%s: image %q must be pinned, not %q", where, image, tag)
	}
}

// checkServices: each Service selects the pods of exactly one Deployment and targets a port those pods declare.
func checkServices(t *testing.T, objs []object, deps []*appsv1.Deployment) {
	t.Helper()
	for _, svc := range ofKind[*corev1.Service](objs) {
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", svc.Name)
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		var matched []*appsv1.Deployment
		for _, d := range deps {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d)
			}
		}
		if len(matched) != 1 {
			t.Errorf("Service %s selects the pods of %d Deployments, want 1", svc.Name, len(matched))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !podHasPort(matched[0].Spec.Template.Spec, p.TargetPort) {
				t.Errorf("Service %s port %s targets %s, which no container of %s declares", svc.Name, p.Name, p.TargetPort.String(), matched[0].Name)
			}
		}
	}
}

// checkSelectors: PDB, HPA, NetworkPolicy and ServiceMonitor point at objects that exist.
func checkSelectors(t *testing.T, objs []object, deps []*appsv1.Deployment) {
	t.Helper()
	matchesSomePod := func(s map[string]string) bool {
		sel := labels.SelectorFromSet(s)
		for _, d := range deps {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				return true
			}
		}
		return false
	}
	for _, pdb := range ofKind[*policyv1.PodDisruptionBudget](objs) {
		if len(pdb.Spec.Selector.MatchLabels) == 0 || !matchesSomePod(pdb.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget %s selects no pods", pdb.Name)
		}
	}
	for _, np := range ofKind[*networkingv1.NetworkPolicy](objs) {
		if len(np.Spec.PodSelector.MatchLabels) == 0 || !matchesSomePod(np.Spec.PodSelector.MatchLabels) {
			t.Errorf("NetworkPolicy %s selects no pods (an empty selector would cover the whole namespace)", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				found := false
				for _, d := range deps {
					if p.Port != nil && labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) && podHasPort(d.Spec.Template.Spec, *p.Port) {
						found = true
					}
				}
				if !found {
					t.Errorf("NetworkPolicy %s opens port %v that its pods do not declare", np.Name, p.Port)
				}
			}
		}
	}
	for _, hpa := range ofKind[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || !slices.ContainsFunc(deps, func(d *appsv1.Deployment) bool { return d.Name == ref.Name }) {
			t.Errorf("HPA %s targets %s %s, which is not rendered", hpa.Name, ref.Kind, ref.Name)
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
			t.Errorf("HPA %s: minReplicas should be at least 2 for a stateless service", hpa.Name)
		}
	}
	services := ofKind[*corev1.Service](objs)
	for _, sm := range ofKind[*monitoringv1.ServiceMonitor](objs) {
		sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
		var matched []*corev1.Service
		for _, s := range services {
			if sel.Matches(labels.Set(s.Labels)) {
				matched = append(matched, s)
			}
		}
		if len(matched) != 1 {
			t.Errorf("ServiceMonitor %s selects %d Services, want 1", sm.Name, len(matched))
			continue
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"storage"}) {
			t.Errorf("ServiceMonitor %s namespaceSelector = %v, want the release namespace", sm.Name, sm.Spec.NamespaceSelector.MatchNames)
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(matched[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor %s endpoint port %q is not a port of Service %s", sm.Name, ep.Port, matched[0].Name)
			}
			job := ""
			for _, r := range ep.RelabelConfigs {
				if r.TargetLabel == "job" && r.Replacement != nil {
					job = *r.Replacement
				}
			}
			if want := map[string]string{"http": "storage_api", "metrics": "loadgen"}[ep.Port]; job != want {
				t.Errorf("ServiceMonitor %s sets job=%q, want the compose job name %q", sm.Name, job, want)
			}
		}
	}
}

func podHasPort(pod corev1.PodSpec, target intstr.IntOrString) bool {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

func findDeployment(t *testing.T, objs []object, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range ofKind[*appsv1.Deployment](objs) {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func containerNamed(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func labelsSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, os.ErrInvalid
	}
	return labels.SelectorFromSet(m), nil
}

func boolOr(a, b *bool) bool {
	if a != nil {
		return *a
	}
	return b != nil && *b
}

func int64Or(a, b *int64) int64 {
	if a != nil {
		return *a
	}
	if b != nil {
		return *b
	}
	return -1
}
