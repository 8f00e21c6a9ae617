package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kubeVersion is the Kubernetes version the chart is rendered and linted for: the one up.sh's kind node runs.
// Without it helm would assume whatever its client library was built with.
const kubeVersion = "1.36.4"

// kubeVer is kubeVersion parsed, once.
var kubeVer = func() *common.KubeVersion {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		panic(err)
	}
	return kv
}()

var (
	repoRoot = mustRepoRoot()
	chartDir = filepath.Join(repoRoot, "deploy", "helm", "storage-api")
	rulesDir = filepath.Join(repoRoot, "deploy", "prometheus", "rules")
	dashDir  = filepath.Join(repoRoot, "deploy", "grafana", "dashboards")
	k8sDir   = filepath.Join(repoRoot, "deploy", "k8s")
)

// The chart is rendered, linted and packaged with helm's own Go packages (the loader, the template engine,
// the values schema validation, the manifest sorter, the linter and the packager the helm CLI calls), so
// test/k8s needs no helm binary: building the CLI took 8-10 minutes of a fresh machine's first make test,
// most of it for code these checks never run (the Kubernetes client, OCI registries, the plugin runtime).
// The calls below follow helm v4's `helm template`, `helm lint` and `helm package` (pkg/action) for what
// this chart uses; the CLI itself still deploys it (deploy/k8s/up.sh) and test/k8s/apiserver installs it
// with the CLI against a real apiserver.

// renderChart renders a chart directory or packaged chart like
//
//	helm template storage-api CHART --namespace storage --kube-version 1.36.4 [--api-versions monitoring.coreos.com/v1] ARGS
//
// where ARGS are --set and --values flags: the values are validated against values.schema.json, the
// templates rendered, NOTES.txt dropped and the manifests sorted in install order, each behind a
// "# Source:" line.
func renderChart(chartPath string, crds bool, args ...string) (string, error) {
	vals, err := valuesFromArgs(args)
	if err != nil {
		return "", err
	}
	ch, err := loader.Load(chartPath)
	if err != nil {
		return "", err
	}
	if ch.Metadata.Type == "library" {
		return "", errors.New("library charts are not installable")
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return "", fmt.Errorf("chart dependencies processing failed: %w", err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kubeVer
	if crds {
		caps.APIVersions = append(caps.APIVersions, "monitoring.coreos.com/v1")
	}
	if c := ch.Metadata.KubeVersion; c != "" && !chartutil.IsCompatibleRange(c, caps.KubeVersion.String()) {
		return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", c, caps.KubeVersion.Version)
	}
	release := common.ReleaseOptions{Name: "storage-api", Namespace: "storage", Revision: 1, IsInstall: true}
	top, err := commonutil.ToRenderValuesWithSchemaValidation(ch, vals, release, caps, false)
	if err != nil {
		return "", err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return "", err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return "", err
	}
	if len(hooks) > 0 {
		// helm template prints hooks after the manifests; the chart has none, and a new one needs a look at
		// what the tests should do with it.
		return "", fmt.Errorf("the chart renders %d hooks (first %s): renderChart does not handle hooks", len(hooks), hooks[0].Path)
	}
	var b strings.Builder
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, m.Content)
	}
	return strings.TrimSpace(b.String()) + "\n", nil
}

// lintChart is `helm lint --strict --kube-version 1.36.4 CHART ARGS`: every finding of warning severity
// or worse is an error.
func lintChart(chartPath string, args ...string) error {
	vals, err := valuesFromArgs(args)
	if err != nil {
		return err
	}
	linter := lint.RunAll(chartPath, vals, "storage", lint.WithKubeVersion(kubeVer))
	var errs []error
	for _, msg := range linter.Messages {
		if msg.Severity >= support.WarningSev {
			errs = append(errs, msg.Err)
		}
	}
	return errors.Join(errs...)
}

func mustRepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// packageChart is `helm package CHART --destination DEST`; it returns the archive's path.
func packageChart(chartPath, dest string) (string, error) {
	ch, err := loader.LoadDir(chartPath)
	if err != nil {
		return "", err
	}
	if len(ch.Metadata.Dependencies) > 0 {
		return "", errors.New("packageChart: the chart has dependencies, which helm package would check first")
	}
	return chartutil.Save(ch, dest)
}

// valuesFromArgs merges the --values files, then the --set assignments, each in the order given, as helm's
// values options do (whatever the order of the flags between the two kinds).
func valuesFromArgs(args []string) (map[string]any, error) {
	var files, sets []string
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			return nil, fmt.Errorf("%s: missing its value", args[i])
		}
		switch flag, v := args[i], args[i+1]; flag {
		case "--values", "-f":
			files = append(files, v)
		case "--set":
			sets = append(sets, v)
		default:
			return nil, fmt.Errorf("valuesFromArgs: %s is not a values flag (want --set or --values)", flag)
		}
	}
	vals := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m, err := loader.LoadValues(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		vals = loader.MergeMaps(vals, m)
	}
	for _, v := range sets {
		if err := strvals.ParseInto(v, vals); err != nil {
			return nil, fmt.Errorf("--set %s: %w", v, err)
		}
	}
	return vals, nil
}

// object is one rendered manifest, decoded into its typed API struct.
type object struct {
	Kind, Name string
	Meta       metav1.ObjectMeta
	Obj        any
	Raw        []byte
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// chartKinds are the kinds the chart may render ("apiVersion/Kind"), each with its typed API struct.
var chartKinds = map[string]func() metav1.ObjectMetaAccessor{
	"apps/v1/Deployment":                      func() metav1.ObjectMetaAccessor { return &appsv1.Deployment{} },
	"v1/Service":                              func() metav1.ObjectMetaAccessor { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() metav1.ObjectMetaAccessor { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                            func() metav1.ObjectMetaAccessor { return &corev1.ConfigMap{} },
	"v1/PersistentVolumeClaim":                func() metav1.ObjectMetaAccessor { return &corev1.PersistentVolumeClaim{} },
	"policy/v1/PodDisruptionBudget":           func() metav1.ObjectMetaAccessor { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() metav1.ObjectMetaAccessor { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() metav1.ObjectMetaAccessor { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() metav1.ObjectMetaAccessor { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() metav1.ObjectMetaAccessor { return &monitoringv1.PrometheusRule{} },
}

// decodeManifests splits helm's output into documents and decodes each strictly into the typed
// struct of its kind. An unknown kind, an unknown or misspelt field, a duplicate field or a wrong
// type is an error.
func decodeManifests(out string) ([]object, error) {
	var objs []object
	for _, doc := range docSep.Split(out, -1) {
		if isBlankYAML(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("reading kind: %w\n%s", err, doc)
		}
		newObj, ok := chartKinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("unexpected object %s %s: add it to chartKinds", tm.APIVersion, tm.Kind)
		}
		target := newObj()
		if err := strictYAML([]byte(doc), target); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", tm.Kind, err, doc)
		}
		meta := *target.GetObjectMeta().(*metav1.ObjectMeta)
		objs = append(objs, object{Kind: tm.Kind, Name: meta.Name, Meta: meta, Obj: target, Raw: []byte(doc)})
	}
	return objs, nil
}

// strictYAML decodes YAML into v the way the API server's strict field validation does:
// duplicate fields, unknown fields and case-mismatched field names are errors.
func strictYAML(data []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func isBlankYAML(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// ofKind returns the typed objects of one Go type, in rendering order.
func ofKind[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func kindCounts(objs []object) map[string]int {
	m := map[string]int{}
	for _, o := range objs {
		m[o.Kind]++
	}
	return m
}

// TestHelmPinsAgree: the helm packages the tests render with are the helm CLI's version that tools/install.sh
// builds for up.sh and the apiserver tests, so what the tests check is what gets installed.
func TestHelmPinsAgree(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "tools", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HELM_VERSION=(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("tools/install.sh has no HELM_VERSION=")
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	dep := regexp.MustCompile(`(?m)^\s*helm\.sh/helm/v4 (\S+)`).FindSubmatch(mod)
	if dep == nil {
		t.Fatal("test/k8s/go.mod does not require helm.sh/helm/v4")
	}
	if string(dep[1]) != string(m[1]) {
		t.Errorf("test/k8s renders with helm %s, tools/install.sh pins HELM_VERSION=%s: keep them equal", dep[1], m[1])
	}
}

// TestMain keeps helm's loader quiet: it logs at INFO each symlink it follows (files/ links to the shared
// rules and dashboards, on purpose), which would bury a failure's output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
