package compose

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// parseDockerfile parses the repository's Dockerfile into build stages.
func parseDockerfile(t testing.TB, root string) []instructions.Stage {
	t.Helper()
	stages, err := parseDockerfileErr(root)
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

func parseDockerfileErr(root string) ([]instructions.Stage, error) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse Dockerfile: %w", err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, fmt.Errorf("Dockerfile instructions: %w", err)
	}
	if len(stages) < 2 {
		return nil, fmt.Errorf("Dockerfile has %d stage(s), want a build and a final stage", len(stages))
	}
	return stages, nil
}

type envMap map[string]string

func (e envMap) Get(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e envMap) Keys() []string {
	var ks []string
	for k := range e {
		ks = append(ks, k)
	}
	return ks
}

// goBuildCommand splits a shell command into the `go build` invocation's leading
// VAR=value assignments and its arguments (after "go"), expanding variables
// from vars. ok is false when the command has no `go build`.
func goBuildCommand(line string, vars map[string]string) (env, args []string, ok bool, err error) {
	for _, part := range strings.Split(line, "&&") {
		words, err := shell.NewLex('\\').ProcessWords(part, envMap(vars))
		if err != nil {
			return nil, nil, false, err
		}
		i := 0
		for i < len(words) && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[i]) {
			i++
		}
		if i+1 < len(words) && words[i] == "go" && words[i+1] == "build" {
			return words[:i], words[i+1:], true, nil
		}
	}
	return nil, nil, false, nil
}

// dockerfileGoBuild returns the environment and `go` arguments of the Dockerfile's
// go build RUN line, with build args expanded from vars.
func dockerfileGoBuild(root string, vars map[string]string) (env, args []string, err error) {
	stages, err := parseDockerfileErr(root)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range stages {
		for _, c := range st.Commands {
			run, isRun := c.(*instructions.RunCommand)
			if !isRun {
				continue
			}
			env, args, ok, err := goBuildCommand(strings.Join(run.CmdLine, " "), vars)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				return env, args, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("no RUN with `go build` in the Dockerfile")
}

// buildFlags is what must agree between the Dockerfile and the Makefile: the
// environment (less the cross-compilation target) and every go build flag, with
// ldflags split into words; the output path and package list may differ.
func buildFlags(env, args []string) (envOut, flags []string) {
	for _, e := range env {
		if !strings.HasPrefix(e, "GOOS=") && !strings.HasPrefix(e, "GOARCH=") {
			envOut = append(envOut, e)
		}
	}
	for i := 1; i < len(args); i++ { // args[0] is "build"
		a := args[i]
		switch {
		case a == "-o":
			i++
		case strings.HasPrefix(a, "-o="):
		case a == "-ldflags" && i+1 < len(args):
			i++
			flags = append(flags, ldflagWords(args[i])...)
		case strings.HasPrefix(a, "-ldflags="):
			flags = append(flags, ldflagWords(strings.TrimPrefix(a, "-ldflags="))...)
		case strings.HasPrefix(a, "-"):
			flags = append(flags, a)
		}
	}
	slices.Sort(envOut)
	slices.Sort(flags)
	return envOut, flags
}

func ldflagWords(s string) []string {
	var out []string
	for _, w := range strings.Fields(strings.Trim(s, `'"`)) {
		out = append(out, "ldflags:"+w)
	}
	return out
}

func TestDockerfileBaseImagesPinned(t *testing.T) {
	root := testkit.RepoRoot(t)
	stages := parseDockerfile(t, root)
	names := map[string]bool{}
	pinned := regexp.MustCompile(`^[a-z0-9./-]+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$`)
	for _, st := range stages {
		if names[st.BaseName] { // FROM an earlier stage
			continue
		}
		t.Run(st.BaseName, func(t *testing.T) {
			if !pinned.MatchString(st.BaseName) {
				t.Errorf("base image %q is not pinned by digest (want name:tag@sha256:...)", st.BaseName)
			}
			tag := imageTag(st.BaseName)
			if tag == "" || tag == "latest" {
				t.Errorf("base image %q: want a readable tag beside the digest, not %q", st.BaseName, tag)
			}
		})
		if st.Name != "" {
			names[st.Name] = true
		}
	}

	// The build stage's Go must be able to build go.mod's go version without
	// downloading a toolchain (the Dockerfile sets GOTOOLCHAIN=local).
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(string(goMod))
	if want == nil {
		t.Fatal("go.mod has no go line")
	}
	var builder string
	for _, st := range stages {
		if strings.HasPrefix(st.BaseName, "golang:") {
			builder = st.BaseName
		}
	}
	got := regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)-`).FindStringSubmatch(builder)
	if got == nil {
		t.Fatalf("build stage %q: want golang:MAJOR.MINOR.PATCH-<distro>", builder)
	}
	if cmpVersion(got[1:4], want[1:4]) < 0 {
		t.Errorf("build image %s is older than go.mod's go %s.%s.%s", builder, want[1], want[2], want[3])
	}
	if !hasEnv(stages[0], "GOTOOLCHAIN", "local") {
		t.Errorf("build stage should set GOTOOLCHAIN=local so a go.mod bump fails loudly instead of downloading")
	}
}

func cmpVersion(a, b []string) int {
	for i := range a {
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x - y
		}
	}
	return 0
}

func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return ""
}

func hasEnv(st instructions.Stage, key, value string) bool {
	for _, c := range st.Commands {
		if e, ok := c.(*instructions.EnvCommand); ok {
			for _, kv := range e.Env {
				if kv.Key == key && kv.Value == value {
					return true
				}
			}
		}
	}
	return false
}

func TestDockerfileFinalStage(t *testing.T) {
	stages := parseDockerfile(t, testkit.RepoRoot(t))
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static-debian13:nonroot@") {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian13:nonroot", final.BaseName)
	}

	var (
		user, healthTest, entrypoint []string
		exposed, volumes             []string
		labels                       = map[string]string{}
		copies                       []*instructions.CopyCommand
	)
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = []string{c.User}
		case *instructions.HealthCheckCommand:
			healthTest = c.Health.Test
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Errorf("ENTRYPOINT in shell form (%q): want the vector form so signals reach the process", c.CmdLine)
			}
			entrypoint = c.CmdLine
		case *instructions.ExposeCommand:
			exposed = append(exposed, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = strings.Trim(kv.Value, `"`)
			}
		case *instructions.CopyCommand:
			copies = append(copies, c)
		case *instructions.RunCommand:
			t.Errorf("RUN in the final stage (%q): distroless has no shell", c.CmdLine)
		}
	}

	t.Run("user", func(t *testing.T) {
		if len(user) == 0 {
			t.Fatal("final stage has no USER")
		}
		uid, gid, _ := strings.Cut(user[0], ":")
		for _, id := range []string{uid, gid} {
			if id == "" {
				continue
			}
			n, err := strconv.Atoi(id)
			if err != nil {
				t.Errorf("USER %s: want numeric ids (runAsNonRoot can only verify numbers)", user[0])
			} else if n == 0 {
				t.Errorf("USER %s: root", user[0])
			}
		}
	})
	t.Run("entrypoint", func(t *testing.T) {
		if !slices.Equal(entrypoint, []string{"/usr/local/bin/storage-api"}) {
			t.Errorf("ENTRYPOINT %q, want [\"/usr/local/bin/storage-api\"]", entrypoint)
		}
	})
	t.Run("healthcheck", func(t *testing.T) {
		want := []string{"CMD", "/usr/local/bin/storage-api", "-healthcheck"}
		if !slices.Equal(healthTest, want) {
			t.Errorf("HEALTHCHECK test %q, want %q (vector form: no shell in the image)", healthTest, want)
		}
	})
	t.Run("expose", func(t *testing.T) {
		if !slices.Contains(exposed, "5000") && !slices.Contains(exposed, "5000/tcp") {
			t.Errorf("EXPOSE %v, want 5000", exposed)
		}
	})
	t.Run("data volume", func(t *testing.T) {
		if !slices.Contains(volumes, "/data") {
			t.Errorf("VOLUME %v, want /data", volumes)
		}
		if !hasEnv(final, "DATA_DIR", "/data") {
			t.Error("final stage should set ENV DATA_DIR=/data")
		}
		owned := false
		for _, c := range copies {
			if c.DestPath == "/data" && c.Chown == "65532:65532" {
				owned = true
			}
		}
		if !owned {
			t.Error("want COPY --chown=65532:65532 ... /data: the nonroot user must own the data directory")
		}
	})
	t.Run("binaries", func(t *testing.T) {
		found := map[string]bool{}
		for _, c := range copies {
			if c.DestPath != "/usr/local/bin/" {
				continue
			}
			for _, src := range c.SourcePaths {
				found[filepath.Base(src)] = true
			}
		}
		for _, b := range []string{"storage-api", "loadgen"} {
			if !found[b] {
				t.Errorf("%s is not copied to /usr/local/bin/", b)
			}
		}
	})
	t.Run("labels", func(t *testing.T) {
		for _, k := range []string{"title", "description", "source", "licenses", "version", "revision"} {
			if labels["org.opencontainers.image."+k] == "" {
				t.Errorf("missing LABEL org.opencontainers.image.%s", k)
			}
		}
		if labels["org.opencontainers.image.version"] != "${VERSION}" || labels["org.opencontainers.image.revision"] != "${REVISION}" {
			t.Errorf("version/revision labels should come from the VERSION/REVISION build args, got %q/%q",
				labels["org.opencontainers.image.version"], labels["org.opencontainers.image.revision"])
		}
	})
}

func TestDockerfileBuildCommand(t *testing.T) {
	root := testkit.RepoRoot(t)
	env, args, err := dockerfileGoBuild(root, map[string]string{"VERSION": "V", "REVISION": "R", "TARGETOS": "linux", "TARGETARCH": "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"} {
		if !slices.Contains(env, want) {
			t.Errorf("go build environment %q lacks %s", env, want)
		}
	}
	_, flags := buildFlags(env, args)
	for _, want := range []string{"-trimpath", "ldflags:-s", "ldflags:-w", "ldflags:main.version=V", "ldflags:main.revision=R"} {
		if !slices.Contains(flags, want) {
			t.Errorf("go build flags %q lack %s", flags, want)
		}
	}
	for _, pkg := range []string{"./cmd/storage-api", "./cmd/loadgen"} {
		if !slices.Contains(args, pkg) {
			t.Errorf("go build %q does not build %s", args, pkg)
		}
	}

	// BuildKit cache mounts keep module downloads and compiled packages between builds.
	stages := parseDockerfile(t, root)
	mounts := map[string]bool{}
	for _, c := range stages[0].Commands {
		if run, ok := c.(*instructions.RunCommand); ok {
			// Mount flags are parsed when the command is expanded.
			if err := run.Expand(func(w string) (string, error) { return w, nil }); err != nil {
				t.Fatal(err)
			}
			for _, m := range instructions.GetMounts(run) {
				if m.Type == instructions.MountTypeCache {
					mounts[m.Target] = true
				}
			}
		}
	}
	for _, want := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
		if !mounts[want] {
			t.Errorf("no RUN --mount=type=cache,target=%s in the build stage", want)
		}
	}
}

// The image must run the binaries the tests build: the Dockerfile's go build and
// the Makefile's build target use the same environment and flags.
func TestDockerfileMatchesMakefile(t *testing.T) {
	root := testkit.RepoRoot(t)
	vars := map[string]string{"VERSION": "V", "REVISION": "R", "TARGETOS": "", "TARGETARCH": ""}
	dEnv, dArgs, err := dockerfileGoBuild(root, vars)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// make -n prints the recipe with make variables expanded, without running it.
	out, err := exec.CommandContext(ctx, "make", "-s", "-n", "-C", root, "build", "VERSION=V", "REVISION=R").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, out)
	}
	var found int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		mEnv, mArgs, ok, err := goBuildCommand(sc.Text(), vars)
		if err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if !ok {
			continue
		}
		found++
		de, df := buildFlags(dEnv, dArgs)
		me, mf := buildFlags(mEnv, mArgs)
		if !slices.Equal(de, me) || !slices.Equal(df, mf) {
			t.Errorf("Makefile and Dockerfile build differently:\n make:       %q %q\n Dockerfile: %q %q", me, mf, de, df)
		}
	}
	if found == 0 {
		t.Fatalf("make -n build runs no go build:\n%s", out)
	}
}
