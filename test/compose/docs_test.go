package compose

// Tests that keep the drift-prone parts of the docs true: the metric list of docs/metrics.md against a live
// /metrics of the real binary, the flag and environment tables against `-h`, and README's ports against the
// compose file.

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.RepoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tableRows returns the cells of every Markdown table row of doc (header and separator rows included).
func tableRows(doc string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// helpFlag is one flag as `-h` describes it.
type helpFlag struct{ env, def string }

var helpEntry = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: [a-z]+)?\n((?:    .*\n?)+)`)
var helpEnv = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
var helpDefault = regexp.MustCompile(`\(default (.*)\)\s*$`)

// parseHelp reads the flag package's usage text: "  -name type\n    \tusage (env NAME) (default X)".
func parseHelp(t *testing.T, bin string) map[string]helpFlag {
	t.Helper()
	out, _ := helpOutput(t, bin)
	flags := map[string]helpFlag{}
	for _, m := range helpEntry.FindAllStringSubmatch(out, -1) {
		usage := strings.Join(strings.Fields(m[2]), " ")
		var f helpFlag
		if e := helpEnv.FindStringSubmatch(usage); e != nil {
			f.env = e[1]
		}
		if d := helpDefault.FindStringSubmatch(usage); d != nil {
			f.def = strings.Trim(d[1], `"`)
		}
		flags[m[1]] = f
	}
	if len(flags) < 5 {
		t.Fatalf("%s -h: parsed only %d flags:\n%s", bin, len(flags), out)
	}
	return flags
}

var (
	docFlag = regexp.MustCompile("`-([a-z0-9-]+)`")
	docEnv  = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
)

// TestFlagTablesMatchHelp: every table row of the docs that names a flag in its first cell names a flag the
// binary has, with the environment variable `-h` gives it; loadgen's table lists every flag, with the default
// `-h` prints.
func TestFlagTablesMatchHelp(t *testing.T) {
	bins := binaries(t)
	api := parseHelp(t, filepath.Join(bins, "storage-api"))
	loadgen := parseHelp(t, filepath.Join(bins, "loadgen"))

	docs, err := filepath.Glob(filepath.Join(testkit.RepoRoot(t), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(testkit.RepoRoot(t), "README.md"))
	checked := 0
	for _, path := range docs {
		rel, _ := filepath.Rel(testkit.RepoRoot(t), path)
		flags := api
		if rel == filepath.Join("docs", "loadgen.md") {
			flags = loadgen
		}
		listed := map[string]bool{}
		for _, row := range tableRows(readDoc(t, rel)) {
			if !strings.HasPrefix(row[0], "`-") {
				continue
			}
			names := docFlag.FindAllStringSubmatch(row[0], -1)
			// The variable is in the first cell ("`-flag` / `ENV`") or the second ("| `-flag` | `ENV` |").
			envCell := row[0]
			if len(row) > 1 && docEnv.MatchString(row[1]) && !strings.Contains(row[0], "/") {
				envCell = row[1]
			}
			envs := docEnv.FindAllStringSubmatch(envCell, -1)
			for i, n := range names {
				checked++
				listed[n[1]] = true
				f, ok := flags[n[1]]
				if !ok {
					t.Errorf("%s: flag -%s is not in the binary's -h", rel, n[1])
					continue
				}
				if len(envs) == len(names) && envs[i][1] != f.env {
					t.Errorf("%s: -%s is documented with %s; -h says %s", rel, n[1], envs[i][1], f.env)
				}
			}
			// loadgen's table has a default column: | flag | env | default | meaning |.
			if _, known := flags[names[0][1]]; rel == filepath.Join("docs", "loadgen.md") && len(row) == 4 && len(names) == 1 && known {
				want := flags[names[0][1]].def
				got := strings.Trim(row[2], "`")
				if want == "" {
					want = "0" // the flag package prints no default for a zero value
				}
				if durationEqual(got, want) || got == want {
					continue
				}
				t.Errorf("%s: -%s default %q; -h says %q", rel, names[0][1], got, want)
			}
		}
		if rel == filepath.Join("docs", "loadgen.md") {
			for name := range loadgen {
				if !listed[name] && name != "version" {
					t.Errorf("docs/loadgen.md: the flag table lacks -%s", name)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d documented flags checked; did the tables change shape?", checked)
	}

	// README's list of the main environment variables.
	readme := readDoc(t, "README.md")
	i := strings.Index(readme, "the main ones:")
	if i < 0 {
		t.Fatal(`README.md: no "the main ones:" list of environment variables`)
	}
	envs := map[string]bool{"PORT": true} // PORT=N is the listen address's shorthand (see -listen-address)
	for _, f := range api {
		envs[f.env] = true
	}
	para := readme[i : i+strings.Index(readme[i:], "\n\n")]
	for _, m := range docEnv.FindAllStringSubmatch(para, -1) {
		if !envs[m[1]] {
			t.Errorf("README.md names %s, which storage-api -h does not list", m[1])
		}
	}
}

func durationEqual(a, b string) bool {
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

// TestMetricsDocMatchesLive compares the metric names and types of docs/metrics.md with what the real binary
// serves on /metrics (bolt, the default backend, which exports every metric memory does; fresh start), both
// ways.
func TestMetricsDocMatchesLive(t *testing.T) {
	bin := filepath.Join(binaries(t), "storage-api")
	addr := testkit.FreeAddr(t)
	startProcess(t, bin, []string{"-listen-address", addr, "-storage", "bolt", "-data-dir", t.TempDir(), "-access-log=false"}, nil)
	testkit.WaitHTTP(t, "http://"+addr+"/readyz", 200, 20*time.Second, nil)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	live := map[string]string{} // name -> type
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			live[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)

	// Documented: the first cell of each table row, `name` or `name{labels}`; `go_*` stands for a prefix.
	// A "type" column, where the table has one, must agree.
	name := regexp.MustCompile("`([a-z_:][a-z0-9_:]*)(\\*)?(?:\\{[^}`]*\\})?`")
	documented := map[string]string{}
	var prefixes []string
	for _, row := range tableRows(readDoc(t, "docs/metrics.md")) {
		if !strings.HasPrefix(row[0], "`") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(row[0], -1) {
			if m[2] == "*" {
				prefixes = append(prefixes, m[1])
				continue
			}
			typ := ""
			if len(row) >= 3 {
				typ = strings.Fields(row[1] + " x")[0]
			}
			documented[m[1]] = typ
		}
	}
	if len(documented) < 10 || len(prefixes) == 0 {
		t.Fatalf("docs/metrics.md: found only %d metrics and prefixes %q; did its tables change shape?", len(documented), prefixes)
	}
	var names []string
	for n := range live {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		typ, ok := documented[n]
		switch {
		case ok && typ != "" && typ != "x" && !strings.HasPrefix(typ, live[n]):
			t.Errorf("docs/metrics.md says %s is a %s; /metrics says %s", n, typ, live[n])
		case !ok && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(n, p) }):
			t.Errorf("/metrics serves %s (%s), which docs/metrics.md does not list", n, live[n])
		}
	}
	for n := range documented {
		if _, ok := live[n]; !ok {
			t.Errorf("docs/metrics.md lists %s, which a fresh storage-api does not serve on /metrics", n)
		}
	}
}

// TestReadmePortsMatchCompose: the URLs of README's stack table are the ports compose publishes, service by
// service; a service the table calls "not published" publishes nothing; every published port is in the table.
func TestReadmePortsMatchCompose(t *testing.T) {
	p := loadProject(t, nil)
	readme := readDoc(t, "README.md")
	start := strings.Index(readme, "| service | URL |")
	if start < 0 {
		t.Fatal("README.md: no stack table (| service | URL | ...)")
	}
	end := strings.Index(readme[start:], "\n\n")
	port := regexp.MustCompile(`localhost:(\d+)`)
	seen := map[string]bool{}
	for _, row := range tableRows(readme[start : start+end])[2:] {
		svc := service(t, p, row[0])
		seen[row[0]] = true
		var published []string
		for _, pc := range svc.Ports {
			published = append(published, pc.Published)
		}
		var documented []string
		for _, m := range port.FindAllStringSubmatch(row[1], -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(published)
		slices.Sort(documented)
		documented = slices.Compact(documented)
		if !slices.Equal(published, documented) {
			t.Errorf("README.md: %s at ports %q; docker-compose.yml publishes %q", row[0], documented, published)
		}
		if len(published) == 0 && !strings.Contains(row[1], "not published") {
			t.Errorf("README.md: %s publishes no port; say so", row[0])
		}
	}
	for _, s := range p.Services {
		if len(s.Ports) > 0 && !seen[s.Name] {
			t.Errorf("docker-compose.yml publishes ports of %s, which README's stack table does not list", s.Name)
		}
	}
}

// TestMakeFuzzRunsEveryTarget: `make fuzz` (README: "every fuzz target") names each Fuzz function of the
// service module, with its package.
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	root := testkit.RepoRoot(t)
	mk := readDoc(t, "Makefile")
	i := strings.Index(mk, "\nfuzz:")
	if i < 0 {
		t.Fatal("Makefile: no fuzz target")
	}
	recipe := mk[i+1:]
	if j := strings.Index(recipe, "\n\n"); j >= 0 {
		recipe = recipe[:j]
	}
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz[A-Za-z0-9_]+)\(`)
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || path == filepath.Join(root, "test")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(b), -1) {
			n++
			if !strings.Contains(recipe, "-fuzz "+m[1]+" ") || !regexp.MustCompile(`-fuzz `+m[1]+` .*\./`+regexp.QuoteMeta(pkg)+`\n`).MatchString(recipe+"\n") {
				t.Errorf("make fuzz does not run %s in ./%s", m[1], pkg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no Fuzz functions found")
	}
}
