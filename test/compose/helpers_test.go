package compose

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// loadProject loads docker-compose.yml like `docker compose` would with the given
// host environment (nil: an empty one, so defaults apply) and profiles ("*": all).
func loadProject(t testing.TB, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root := testkit.RepoRoot(t)
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(envList),
		cli.WithProfiles(profiles),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

var (
	allOnce    sync.Once
	allProject *types.Project
)

// allServices is the project with every profile enabled and no host variables,
// loaded once: tests only read it.
func allServices(t testing.TB) *types.Project {
	t.Helper()
	allOnce.Do(func() { allProject = loadProject(t, nil, "*") })
	if allProject == nil {
		t.Fatal("docker-compose.yml did not load")
	}
	return allProject
}

func service(t testing.TB, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("service %q missing from docker-compose.yml (have %v)", name, p.ServiceNames())
	}
	return s
}

// environ turns a compose environment into KEY=VALUE pairs; unset values are dropped.
func environ(env types.MappingWithEquals) map[string]string {
	m := map[string]string{}
	for k, v := range env {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// hostPathFor maps a path inside a service's container to the host path of the bind
// mount that provides it, or "" when no bind mount covers it.
func hostPathFor(s types.ServiceConfig, containerPath string) string {
	best := ""
	host := ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		t := filepath.Clean(v.Target)
		if containerPath == t || strings.HasPrefix(containerPath, t+"/") {
			if len(t) > len(best) {
				best, host = t, filepath.Join(v.Source, strings.TrimPrefix(containerPath, t))
			}
		}
	}
	return host
}

// Binaries built once per test run, with the Dockerfile's own go build command.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Values the tests pass as build args, to see that the -X flags hit real variables.
const (
	testVersion  = "v0.0.0-compose-test"
	testRevision = "0123456789abcdef"
)

// binaries builds ./cmd/storage-api and ./cmd/loadgen exactly as the Dockerfile does
// (its RUN line, with VERSION/REVISION set) and returns the directory holding them.
func binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root := testkit.RepoRoot(t)
		var dir string
		dir, buildErr = os.MkdirTemp("", "compose-test-bin-")
		if buildErr != nil {
			return
		}
		binDir = dir
		env, args, err := dockerfileGoBuild(root, map[string]string{
			"VERSION": testVersion, "REVISION": testRevision,
			"TARGETOS": "", "TARGETARCH": "",
		})
		if err != nil {
			buildErr = err
			return
		}
		// Same command, but write to our temporary directory instead of /out/bin/.
		i := slices.Index(args, "-o")
		if i < 0 || i+1 >= len(args) {
			buildErr = fmt.Errorf("Dockerfile go build has no -o: %q", args)
			return
		}
		args[i+1] = dir + string(filepath.Separator)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the binaries with the Dockerfile's flags: %v", buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var flagLine = regexp.MustCompile(`(?m)^\s{1,4}-([A-Za-z0-9][A-Za-z0-9._-]*)`)

// helpOutput runs `bin -h` and returns its text and the flag names it lists.
func helpOutput(t testing.TB, bin string) (string, map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput() // both binaries exit 0 on -h (internal/cli)
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h lists no flags:\n%s", bin, out)
	}
	return string(out), flags
}

// startProcess starts bin with args and env (only those, plus PATH/HOME) for the rest of
// the test; testkit.Start logs its output on failure and stops it at the end.
func startProcess(t testing.TB, bin string, args []string, env map[string]string) *testkit.Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return testkit.Start(t, cmd)
}
