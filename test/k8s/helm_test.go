package k8s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// kubeVersion is the Kubernetes version helm renders for: the one up.sh's kind node runs. A
// go-installed helm would otherwise assume whatever its client library was built with.
const kubeVersion = "1.36.4"

var (
	repoRoot = mustRepoRoot()
	chartDir = filepath.Join(repoRoot, "deploy", "helm", "storage-api")
	rulesDir = filepath.Join(repoRoot, "deploy", "prometheus", "rules")
	dashDir  = filepath.Join(repoRoot, "deploy", "grafana", "dashboards")
	k8sDir   = filepath.Join(repoRoot, "deploy", "k8s")
	helmHome string // isolated HELM_*_HOME, so the tests never read or write the user's helm config
)

func mustRepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "helm-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helmBin returns the pinned helm (testkit.Tool: skipped under -short when missing, failed otherwise).
func helmBin(t *testing.T) string {
	t.Helper()
	return testkit.Tool(t, "helm")
}

// runHelm runs helm with a bounded time and returns stdout; stderr is part of the error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// renderArgs is the helm template command line for the chart (or a packaged chart) in namespace storage.
func renderArgs(chart string, crds bool, extra ...string) []string {
	args := []string{"template", "storage-api", chart, "--namespace", "storage", "--kube-version", kubeVersion}
	if crds {
		args = append(args, "--api-versions", "monitoring.coreos.com/v1")
	}
	return append(args, extra...)
}

// object is one rendered manifest, decoded into its typed API struct.
type object struct {
	Kind, Name string
	Meta       metav1.ObjectMeta
	Obj        any
	Raw        []byte
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

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
		var target any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			target = &appsv1.Deployment{}
		case "v1/Service":
			target = &corev1.Service{}
		case "v1/ServiceAccount":
			target = &corev1.ServiceAccount{}
		case "v1/ConfigMap":
			target = &corev1.ConfigMap{}
		case "v1/PersistentVolumeClaim":
			target = &corev1.PersistentVolumeClaim{}
		case "policy/v1/PodDisruptionBudget":
			target = &policyv1.PodDisruptionBudget{}
		case "autoscaling/v2/HorizontalPodAutoscaler":
			target = &autoscalingv2.HorizontalPodAutoscaler{}
		case "networking.k8s.io/v1/NetworkPolicy":
			target = &networkingv1.NetworkPolicy{}
		case "monitoring.coreos.com/v1/ServiceMonitor":
			target = &monitoringv1.ServiceMonitor{}
		case "monitoring.coreos.com/v1/PrometheusRule":
			target = &monitoringv1.PrometheusRule{}
		default:
			return nil, fmt.Errorf("unexpected object %s %s: add it to decodeManifests", tm.APIVersion, tm.Kind)
		}
		if err := strictYAML([]byte(doc), target); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", tm.Kind, err, doc)
		}
		meta := metaOf(target)
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

func metaOf(o any) metav1.ObjectMeta {
	switch v := o.(type) {
	case *appsv1.Deployment:
		return v.ObjectMeta
	case *corev1.Service:
		return v.ObjectMeta
	case *corev1.ServiceAccount:
		return v.ObjectMeta
	case *corev1.ConfigMap:
		return v.ObjectMeta
	case *corev1.PersistentVolumeClaim:
		return v.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return v.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return v.ObjectMeta
	case *networkingv1.NetworkPolicy:
		return v.ObjectMeta
	case *monitoringv1.ServiceMonitor:
		return v.ObjectMeta
	case *monitoringv1.PrometheusRule:
		return v.ObjectMeta
	}
	panic(fmt.Sprintf("metaOf: %T", o))
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
