package k8s

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// The chart configures the binaries through environment variables and runs the image's paths and
// user. These tests read the service's own sources (internal/config, internal/loadgen, Dockerfile)
// so a renamed variable or a moved binary fails here rather than in a cluster.

func renderAllOn(t *testing.T) []object {
	t.Helper()
	out, err := renderChart(chartDir, true, allOnS3...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestChartEnvMatchesBinaries(t *testing.T) {
	objs := renderAllOn(t)
	apiSrc, err := os.ReadFile(filepath.Join(repoRoot, "internal", "config", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	api := containerNamed(findDeployment(t, objs, "storage-api").Spec.Template.Spec.Containers, "storage-api")
	for _, e := range api.Env {
		// AWS_* belong to the SDK's standard chain, not to the service's flags.
		if strings.HasPrefix(e.Name, "AWS_") {
			continue
		}
		if !strings.Contains(string(apiSrc), `"`+e.Name+`"`) {
			t.Errorf("the chart sets %s, which internal/config/config.go does not read", e.Name)
		}
	}

	lgSrc, err := os.ReadFile(filepath.Join(repoRoot, "internal", "loadgen", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	lg := containerNamed(findDeployment(t, objs, "storage-api-loadgen").Spec.Template.Spec.Containers, "loadgen")
	for _, e := range lg.Env {
		// loadgen reads LOADGEN_ + the flag name upper-cased with "-" as "_".
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.Name, "LOADGEN_")), "_", "-")
		if !strings.HasPrefix(e.Name, "LOADGEN_") || !strings.Contains(string(lgSrc), `"`+flag+`"`) {
			t.Errorf("the chart sets %s, but loadgen has no flag %q", e.Name, flag)
		}
	}
}

func TestChartMatchesDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for what, re := range map[string]*regexp.Regexp{
		"USER 65532":                            regexp.MustCompile(`(?m)^USER 65532(:65532)?\s*$`),
		"ENTRYPOINT /usr/local/bin/storage-api": regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/storage-api"\]`),
		"loadgen copied to /usr/local/bin/":     regexp.MustCompile(`(?m)^COPY .*/loadgen .*/usr/local/bin/\s*$`),
		"EXPOSE 5000":                           regexp.MustCompile(`(?m)^EXPOSE 5000\s*$`),
	} {
		if !re.Match(df) {
			t.Errorf("Dockerfile no longer has %s, which the chart relies on", what)
		}
	}
	objs := renderAllOn(t)
	for _, d := range ofKind[*appsv1.Deployment](objs) {
		for _, c := range d.Spec.Template.Spec.Containers {
			switch c.Name {
			case "storage-api":
				if len(c.Command) != 0 {
					t.Errorf("the API container should use the image's ENTRYPOINT, got command %v", c.Command)
				}
			case "loadgen":
				if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/loadgen" {
					t.Errorf("loadgen command = %v, want [/usr/local/bin/loadgen]", c.Command)
				}
			default:
				t.Errorf("unexpected container %s", c.Name)
			}
		}
	}
}
