package compose

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// Variables the AWS SDK reads itself (issue 8: credentials through the standard
// chain), so the API's -h does not list them.
var awsSDKEnv = map[string]bool{"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_REGION": true}

// binaryOf names the binary a service of our image runs: its entrypoint, else the
// image's ENTRYPOINT (storage-api).
func binaryOf(s types.ServiceConfig) string {
	if len(s.Entrypoint) > 0 {
		return s.Entrypoint[0]
	}
	return "/usr/local/bin/storage-api"
}

// flagNames returns the names of the -flags in args ("-a", "--b=1" -> a, b).
func flagNames(args []string) []string {
	var names []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			names = append(names, name)
		}
	}
	return names
}

// The compose file configures our binaries only with flags and variables they
// really accept: a typo would otherwise be silently ignored in the container.
func TestComposeUsesRealFlags(t *testing.T) {
	dir := binaries(t)
	apiHelp, apiFlags := helpOutput(t, filepath.Join(dir, "storage-api"))
	lgHelp, lgFlags := helpOutput(t, filepath.Join(dir, "loadgen"))
	// The OpenTelemetry variables each binary's -h lists as read (internal/tracing).
	otelVar := regexp.MustCompile(`(?m)^  (OTEL_[A-Z_]+) `)
	otelEnv := map[string]map[string]bool{"storage-api": {}, "loadgen": {}}
	for bin, help := range map[string]string{"storage-api": apiHelp, "loadgen": lgHelp} {
		for _, m := range otelVar.FindAllStringSubmatch(help, -1) {
			otelEnv[bin][m[1]] = true
		}
	}
	apiEnv := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(apiHelp, -1) {
		apiEnv[m[1]] = true
	}
	if len(apiEnv) == 0 {
		t.Fatalf("storage-api -h names no environment variables:\n%s", apiHelp)
	}
	flagsOf := map[string]map[string]bool{"storage-api": apiFlags, "loadgen": lgFlags}

	checked := 0
	for name, s := range allServices(t).Services {
		if s.Build == nil {
			continue
		}
		checked++
		t.Run(name, func(t *testing.T) {
			bin := binaryOf(s)
			base := filepath.Base(bin)
			if bin != "/usr/local/bin/"+base || flagsOf[base] == nil {
				t.Fatalf("runs %s, which the image does not have (/usr/local/bin/storage-api or loadgen)", bin)
			}
			for _, f := range flagNames(s.Command) {
				if !flagsOf[base][f] {
					t.Errorf("command flag -%s is not a %s flag", f, base)
				}
			}
			for k := range s.Environment {
				if otelEnv[base][k] {
					continue
				}
				switch base {
				case "storage-api":
					if !apiEnv[k] && !awsSDKEnv[k] {
						t.Errorf("%s is neither a storage-api variable (see its -h) nor one the AWS SDK reads", k)
					}
				case "loadgen":
					f, ok := strings.CutPrefix(k, "LOADGEN_")
					if f = strings.ReplaceAll(strings.ToLower(f), "_", "-"); !ok || !lgFlags[f] {
						t.Errorf("%s is not a loadgen variable (LOADGEN_ + a flag of its -h)", k)
					}
				}
			}
			h := s.HealthCheck.Test
			if len(h) < 2 || h[1] != "/usr/local/bin/storage-api" {
				t.Fatalf("healthcheck %q: want /usr/local/bin/storage-api -healthcheck (no shell or curl in the image)", h)
			}
			if !slices.Contains(h, "-healthcheck") {
				t.Errorf("healthcheck %q lacks -healthcheck", h)
			}
			for _, f := range flagNames(h[2:]) {
				if !apiFlags[f] {
					t.Errorf("healthcheck flag -%s is not a storage-api flag", f)
				}
			}
		})
	}
	if checked != 4 {
		t.Errorf("checked %d services built from the Dockerfile, want 4", checked)
	}
}

// The -X flags of the Dockerfile land in real variables of package main.
func TestBinaryVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), "storage-api"), "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("storage-api -version: %v\n%s", err, out)
	}
	for _, want := range []string{testVersion, testRevision} {
		if !strings.Contains(string(out), want) {
			t.Errorf("storage-api -version printed %q, want it to contain the build arg %q", out, want)
		}
	}
}

// runHealthcheck runs a compose healthcheck command (CMD form) with the container's
// environment, the binary taken from our build, and returns its error.
func runHealthcheck(t *testing.T, test []string, env map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), filepath.Base(test[1])), test[2:]...)
	cmd.Env = nil
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("healthcheck %q: %v %s", test[1:], err, out)
	}
	return err
}

// replaceArg returns args with the value after flag (or in flag=value) set to v.
func replaceArg(args []string, flag, v string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == flag && i+1 < len(out) {
			out[i+1] = v
		} else if strings.HasPrefix(a, flag+"=") {
			out[i] = flag + "=" + v
		}
	}
	return out
}

// The default stack, minus Docker: the API started with storage_api's environment,
// loadgen with loadgen's, both healthchecks run as compose would run them, and the
// traffic shows up in the API's metrics. About 60 requests on 127.0.0.1.
func TestComposeStackRuns(t *testing.T) {
	bins := binaries(t)
	p := allServices(t)
	apiSvc, lgSvc := service(t, p, "storage_api"), service(t, p, "loadgen")

	apiAddr := testkit.FreeAddr(t)
	apiEnv := environ(apiSvc.Environment)
	dataDir := t.TempDir()
	apiEnv["DATA_DIR"] = dataDir // the named volume
	apiEnv["LISTEN_ADDRESS"] = apiAddr

	// The healthcheck must be able to fail: nothing listens yet.
	if runHealthcheck(t, apiSvc.HealthCheck.Test, apiEnv) == nil {
		t.Fatal("storage_api healthcheck passed with no API running")
	}
	startProcess(t, filepath.Join(bins, "storage-api"), nil, apiEnv)
	testkit.WaitHTTP(t, "http://"+apiAddr+"/readyz", http.StatusOK, 15*time.Second, nil)
	if err := runHealthcheck(t, apiSvc.HealthCheck.Test, apiEnv); err != nil {
		t.Errorf("storage_api healthcheck fails against a running API: %v", err)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) == 0 {
		t.Errorf("bolt store wrote nothing to DATA_DIR %s", dataDir)
	}

	lgAddr := testkit.FreeAddr(t)
	lgEnv := environ(lgSvc.Environment)
	lgEnv["LOADGEN_TARGET"] = "http://" + apiAddr
	lgEnv["LOADGEN_METRICS_ADDRESS"] = lgAddr
	lgEnv["LOADGEN_DURATION"] = "3s"
	lg := startProcess(t, filepath.Join(bins, "loadgen"), nil, lgEnv)
	testkit.WaitHTTP(t, "http://"+lgAddr+"/healthz", http.StatusOK, 10*time.Second, nil)
	_, port, _ := strings.Cut(lgAddr, ":")
	hc := replaceArg(lgSvc.HealthCheck.Test, "-listen-address", ":"+port)
	if err := runHealthcheck(t, hc, lgEnv); err != nil {
		t.Errorf("loadgen healthcheck fails against a running loadgen: %v", err)
	}

	select {
	case <-lg.Done():
		if lg.Wait() != nil {
			t.Errorf("loadgen with the compose settings exited: %v", lg.Wait())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("loadgen with LOADGEN_DURATION=3s still runs after 30s")
	}

	resp, err := http.Get("http://" + apiAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	re := regexp.MustCompile(`(?m)^http_request_duration_seconds_count\{[^}]*path="/api/buckets/\{id\}"[^}]*\} [1-9]`)
	if !re.Match(body) {
		t.Errorf("no /api/buckets/{id} requests counted in the API's metrics after loadgen ran")
	}
}
