package k8s

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// kubeScoreRenders are the renders kube-score scores: the defaults, every feature on the bolt store, and the
// s3 backend with every feature.
var kubeScoreRenders = []struct {
	name string
	args []string
}{
	{"defaults", nil},
	{"all-bolt", allOnBolt},
	{"s3", allOnS3},
}

// acceptedKubeScore reads kube-score.accept: check id -> renders it is accepted for.
func acceptedKubeScore(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("kube-score.accept")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acc := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			t.Fatalf("kube-score.accept: %q: want <check> <renders> <reason>", line)
		}
		acc[fields[0]] = append(acc[fields[0]], strings.Split(fields[1], ",")...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestKubeScore runs the pinned kube-score on each render and fails on every finding of level WARNING or
// CRITICAL that kube-score.accept does not accept for that render. Two optional checks are switched on
// because the chart meets them.
func TestKubeScore(t *testing.T) {
	bin := testkit.Tool(t, "kube-score")
	accepted := acceptedKubeScore(t)
	for _, r := range kubeScoreRenders {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			out, err := renderChart(chartDir, true, r.args...)
			if err != nil {
				t.Fatal(err)
			}
			manifest := filepath.Join(t.TempDir(), "render.yaml")
			if err := os.WriteFile(manifest, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"score", "--output-format", "ci",
				"--enable-optional-test", "container-seccomp-profile",
				"--enable-optional-test", "container-ports-check"}
			for check, renders := range accepted {
				if slices.Contains(renders, r.name) || slices.Contains(renders, "all") {
					args = append(args, "--ignore-test", check)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, _ := exec.CommandContext(ctx, bin, append(args, manifest)...).CombinedOutput() // exits 1 on findings
			scored := 0
			for _, line := range strings.Split(string(res), "\n") {
				switch {
				case strings.HasPrefix(line, "[OK]"):
					scored++
				case strings.HasPrefix(line, "[WARNING]"), strings.HasPrefix(line, "[CRITICAL]"):
					t.Errorf("kube-score: %s", line)
				}
			}
			if scored < 10 {
				t.Fatalf("kube-score scored only %d checks:\n%s", scored, res)
			}
		})
	}
}
