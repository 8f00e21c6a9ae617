package compose

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// The s3 profile, minus Docker: versitygw started with the compose command,
// environment and bucket-as-mounted-directory, under cap_drop ALL and
// no-new-privileges like the container; two API processes with storage_api_s3's
// environment share the bucket. Needs .tools/bin/versitygw (tools/install.sh).
func TestComposeS3ProfileRuns(t *testing.T) {
	gw := testkit.Tool(t, "versitygw")
	bins := binaries(t)
	p := allServices(t)
	gwSvc, apiSvc := service(t, p, "versitygw"), service(t, p, "storage_api_s3")

	// Container paths under /data become paths under a temporary posix root; the
	// named volume's mount point is what creates the bucket directory.
	posixRoot := t.TempDir()
	args := slices.Clone(gwSvc.Command)
	if len(args) < 2 || args[len(args)-2] != "posix" || args[len(args)-1] != "/data" {
		t.Fatalf("versitygw command %q: want ... posix /data", args)
	}
	args[len(args)-1] = posixRoot
	for _, v := range gwSvc.Volumes {
		rel, ok := strings.CutPrefix(v.Target, "/data/")
		if !ok {
			t.Fatalf("versitygw volume at %s, outside /data", v.Target)
		}
		if err := os.MkdirAll(filepath.Join(posixRoot, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gwAddr := testkit.FreeAddr(t)
	args = replaceArg(args, "--port", gwAddr)

	bin := gw
	if os.Geteuid() == 0 {
		// As root, drop every capability and forbid new privileges, as the
		// container's cap_drop: [ALL] and no-new-privileges do.
		if sp, err := exec.LookPath("setpriv"); err == nil {
			args = append([]string{"--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", gw}, args...)
			bin = sp
		}
	}
	startProcess(t, bin, args, environ(gwSvc.Environment))

	// The compose healthcheck's URL, pointed at our port.
	hc := gwSvc.HealthCheck.Test
	u, err := url.Parse(hc[len(hc)-1])
	if err != nil || u.Scheme != "http" {
		t.Fatalf("versitygw healthcheck %q should end with its URL", hc)
	}
	u.Host = gwAddr
	testkit.WaitHTTP(t, u.String(), http.StatusOK, 15*time.Second, nil)

	// Two replicas, as deploy.replicas: 2 runs them.
	var replicas []string
	for range 2 {
		addr := testkit.FreeAddr(t)
		env := environ(apiSvc.Environment)
		if env["S3_ENDPOINT"] != "http://versitygw:7070" {
			t.Fatalf("storage_api_s3 S3_ENDPOINT %q, want http://versitygw:7070", env["S3_ENDPOINT"])
		}
		env["S3_ENDPOINT"] = "http://" + gwAddr
		env["LISTEN_ADDRESS"] = addr
		startProcess(t, filepath.Join(bins, "storage-api"), nil, env)
		testkit.WaitHTTP(t, "http://"+addr+"/readyz", http.StatusOK, 20*time.Second, nil)
		if err := runHealthcheck(t, apiSvc.HealthCheck.Test, env); err != nil {
			t.Errorf("storage_api_s3 healthcheck fails against a running replica: %v", err)
		}
		replicas = append(replicas, "http://"+addr+"/api/buckets/compose-s3-profile")
	}

	body := []byte("written through one replica, read through the other")
	for _, step := range []struct {
		method, url string
		body        []byte
		want        int
		wantBody    []byte
	}{
		{http.MethodPut, replicas[0], body, http.StatusCreated, nil},
		{http.MethodGet, replicas[1], nil, http.StatusOK, body},
		{http.MethodDelete, replicas[1], nil, http.StatusNoContent, nil},
		{http.MethodGet, replicas[0], nil, http.StatusNotFound, nil},
	} {
		req, err := http.NewRequest(step.method, step.url, bytes.NewReader(step.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", step.method, step.url, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Fatalf("%s %s: %s %s, want %d", step.method, step.url, resp.Status, got, step.want)
		}
		if step.wantBody != nil && !bytes.Equal(got, step.wantBody) {
			t.Errorf("%s %s: body %q, want %q", step.method, step.url, got, step.wantBody)
		}
	}
}
