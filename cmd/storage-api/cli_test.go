package main

import (
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
	"github.com/sre-instrumentation/storage-api/internal/cli/clitest"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runBinary(t, 10*time.Second, nil, "-version")
	if code != 0 {
		t.Fatalf("-version exited %d: %s", code, stderr)
	}
	for _, want := range []string{"storage-api", testVersion, testRevision, "go1."} {
		if !strings.Contains(stdout, want) {
			t.Errorf("-version printed %q; want it to contain %q", stdout, want)
		}
	}
}

// TestHelp checks -h: exit 0, and every flag of the documented interface listed with
// its environment variable.
func TestHelp(t *testing.T) {
	t.Parallel()
	code, _, usage := runInProcess(t, 10*time.Second, nil, "-h")
	if code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	flags := map[string]string{
		"listen-address": "LISTEN_ADDRESS", "storage": "STORAGE_BACKEND", "data-dir": "DATA_DIR",
		"max-object-size": "MAX_OBJECT_SIZE", "log-level": "LOG_LEVEL", "access-log": "ACCESS_LOG",
		"shutdown-timeout": "SHUTDOWN_TIMEOUT", "shutdown-delay": "SHUTDOWN_DELAY", "metrics": "METRICS_ENABLED",
		"fault-error-ratio": "FAULT_ERROR_RATIO", "fault-latency": "FAULT_LATENCY", "fault-latency-ratio": "FAULT_LATENCY_RATIO",
		"s3-bucket": "S3_BUCKET", "s3-prefix": "S3_PREFIX", "s3-endpoint": "S3_ENDPOINT", "s3-region": "S3_REGION",
		"s3-path-style": "S3_PATH_STYLE", "s3-conditional-writes": "S3_CONDITIONAL_WRITES",
		"read-header-timeout": "READ_HEADER_TIMEOUT", "read-timeout": "READ_TIMEOUT", "write-timeout": "WRITE_TIMEOUT",
		"idle-timeout": "IDLE_TIMEOUT", "max-header-bytes": "MAX_HEADER_BYTES", "debug-address": "DEBUG_ADDRESS",
		"max-inflight-bytes": "MAX_INFLIGHT_BYTES", "max-connections": "MAX_CONNECTIONS",
		"min-transfer-rate": "MIN_TRANSFER_RATE", "transfer-grace": "TRANSFER_GRACE", "memory-limit": "MEMORY_LIMIT",
	}
	// PrintDefaults writes "  -name type" and then the indented description.
	listed := map[string]string{}
	lines := strings.Split(usage, "\n")
	header := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	for i, l := range lines {
		if m := header.FindStringSubmatch(l); m != nil && i+1 < len(lines) {
			listed[m[1]] = lines[i+1]
		}
	}
	for name, env := range flags {
		desc, ok := listed[name]
		if !ok {
			t.Errorf("-h does not list -%s", name)
			continue
		}
		if !strings.Contains(desc, "(env "+env+")") {
			t.Errorf("-h: -%s does not show (env %s): %q", name, env, desc)
		}
	}
	for name, desc := range listed {
		_, documented := flags[name]
		// -healthcheck and -version are actions, not settings: no variable.
		if !documented && name != "healthcheck" && name != "version" {
			t.Errorf("-h lists -%s, which this test does not know: add it (and its variable) here: %q", name, desc)
		}
	}
	if !strings.Contains(listed["listen-address"], "PORT") {
		t.Errorf("-h: -listen-address does not mention PORT: %q", listed["listen-address"])
	}
}

// TestExitCodes holds storage-api to the exit statuses both binaries share (internal/cli),
// run in process through run as main calls it.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	closed := testkit.FreeAddr(t) // nothing listens there
	clitest.Check(t, "storage-api", run, exitCode, []clitest.Case{
		{Class: clitest.Help, Args: []string{"-h"}},
		{Class: clitest.UnknownFlag, Args: []string{"-colour"}, Mention: []string{"colour"}},
		{Class: clitest.BadValue, Args: []string{"-max-object-size", "ten"}, Mention: []string{"-max-object-size", "ten"}},
		{Class: clitest.BadEnv, Env: map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, Mention: []string{"SHUTDOWN_TIMEOUT", "soon"}},
		{Class: clitest.InvalidConfig, Args: []string{"-storage", "floppy", "-max-object-size", "-5"}, Mention: []string{"-storage", "-max-object-size"}},
		{Class: clitest.Positional, Args: []string{"serve"}, Mention: []string{"serve"}},
		{Class: clitest.Failure, Args: []string{"-healthcheck", "-listen-address", closed}, Mention: []string{"healthcheck"}},
		{Class: clitest.Success, Args: []string{"-version"}},
	})
}

// TestInvalidConfig: a bad value stops the process before it listens, with exit status 2
// (usage) and a message naming what to fix.
func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"not a number", nil, []string{"-max-object-size", "ten"}, []string{"-max-object-size", "ten"}},
		{"unknown backend", nil, []string{"-storage", "floppy"}, []string{"-storage", "floppy"}},
		{"ratio over 1", nil, []string{"-fault-latency-ratio", "2"}, []string{"-fault-latency-ratio"}},
		{"bad duration in env", []string{"SHUTDOWN_TIMEOUT=soon"}, nil, []string{"SHUTDOWN_TIMEOUT", "soon"}},
		{"NaN ratio in env", []string{"FAULT_ERROR_RATIO=NaN", "STORAGE_BACKEND=memory"}, nil, []string{"FAULT_ERROR_RATIO", "not a finite number"}},
		{"infinite ratio", nil, []string{"-fault-latency-ratio", "+Inf"}, []string{"-fault-latency-ratio", "not a finite number"}},
		{"negative infinite ratio in env", []string{"FAULT_ERROR_RATIO=-inf", "STORAGE_BACKEND=memory"}, nil, []string{"FAULT_ERROR_RATIO", "not a finite number"}},
		{"bad PORT", []string{"PORT=http"}, nil, []string{"PORT", "http"}},
		{"s3 without bucket", []string{"STORAGE_BACKEND=s3"}, nil, []string{"-s3-bucket"}},
		{"unknown flag", nil, []string{"-colour"}, []string{"colour"}},
		{"positional argument", nil, []string{"serve"}, []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Port 0 and memory: should a bad value be accepted, the process starts
			// listening and runInProcess's timeout fails the test, without touching :5000 or ./data.
			args := append([]string{"-listen-address", "127.0.0.1:0", "-storage", "memory"}, tt.args...)
			if len(tt.env) > 0 {
				args = tt.args // env cases: a flag would override the variable under test
				if !strings.HasPrefix(tt.env[0], "PORT=") {
					args = append(args, "-listen-address", "127.0.0.1:0")
				}
			}
			code, stdout, stderr := runInProcess(t, 10*time.Second, tt.env, args...)
			if code != cli.ExitUsage {
				t.Fatalf("exit %d with %v %q; want %d (usage)", code, tt.env, tt.args, cli.ExitUsage)
			}
			if strings.Contains(stdout, "listening") {
				t.Errorf("started listening despite the bad value: %s", stdout)
			}
			if !strings.Contains(stderr, "storage-api: ") {
				t.Errorf("stderr has no storage-api: error line:\n%s", stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	p := startInProcess(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory", "-access-log=false")
	_, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	closedPort := strconv.Itoa(testkit.FreePort(t))

	// A listener that accepts and never answers: the healthcheck must give up (2s).
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, hungPort, _ := net.SplitHostPort(hung.Addr().String())

	// A server whose /healthz answers 500.
	sick, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sickSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "sick", http.StatusInternalServerError)
	})}
	go sickSrv.Serve(sick)
	defer sickSrv.Close()
	_, sickPort, _ := net.SplitHostPort(sick.Addr().String())

	tests := []struct {
		name     string
		env      []string
		args     []string
		wantZero bool
	}{
		{"running, flag", nil, []string{"-listen-address", "127.0.0.1:" + port}, true},
		// The container image's HEALTHCHECK runs with the service's own environment.
		{"running, PORT", []string{"PORT=" + port}, nil, true},
		{"running, LISTEN_ADDRESS on all interfaces", []string{"LISTEN_ADDRESS=:" + port}, nil, true},
		{"nothing listening", nil, []string{"-listen-address", "127.0.0.1:" + closedPort}, false},
		{"never answers", []string{"PORT=" + hungPort}, nil, false},
		{"answers 500", []string{"PORT=" + sickPort}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 10s: the check's own 2s limit plus a loaded machine's process start.
			code, _, stderr := runInProcess(t, 10*time.Second, tt.env, append([]string{"-healthcheck"}, tt.args...)...)
			if (code == 0) != tt.wantZero {
				t.Errorf("-healthcheck exited %d (want zero: %v); stderr: %s", code, tt.wantZero, stderr)
			}
		})
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestAccessLogAndRequestID checks the access-log line of each request and the
// X-Request-Id echo: the client's id when valid, a generated one otherwise.
func TestAccessLogAndRequestID(t *testing.T) {
	p := startInProcess(t, nil, "-listen-address", "127.0.0.1:0", "-storage", "memory")
	client := newClient(1)
	generated := regexp.MustCompile(`^[0-9a-f]{16}$`)
	tests := []struct {
		name, method, path string
		body               []byte
		reqID              string // sent as X-Request-Id ("" for none)
		wantEcho           bool   // the response carries reqID back (else a generated id)
		status             int
		route              string
	}{
		{"put with id", http.MethodPut, "/api/buckets/log-test", []byte("hello"), "given-id-1", true, http.StatusCreated, "/api/buckets/{id}"},
		{"get without id", http.MethodGet, "/api/buckets/log-test", nil, "", false, http.StatusOK, "/api/buckets/{id}"},
		{"missing object", http.MethodGet, "/api/buckets/nope", nil, "given-id-2", true, http.StatusNotFound, "/api/buckets/{id}"},
		{"unknown route", http.MethodGet, "/no/such/route", nil, "given-id-3", true, http.StatusNotFound, "unmatched"},
		{"wrong method", http.MethodPost, "/api/buckets/log-test", []byte("x"), "given-id-4", true, http.StatusMethodNotAllowed, "/api/buckets/{id}"},
		{"healthz", http.MethodGet, "/healthz", nil, "given-id-5", true, http.StatusOK, "/healthz"},
		{"unprintable id is replaced", http.MethodGet, "/healthz", nil, "bad id", false, http.StatusOK, "/healthz"},
		{"overlong id is replaced", http.MethodGet, "/healthz", nil, strings.Repeat("x", 200), false, http.StatusOK, "/healthz"},
	}
	type sent struct {
		id    string
		bytes int
	}
	results := make([]sent, len(tests))
	for i, tt := range tests {
		h := http.Header{}
		if tt.reqID != "" {
			h.Set("X-Request-Id", tt.reqID)
		}
		status, rh, body, err := do(client, tt.method, p.url+tt.path, tt.body, h)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, status, tt.status)
		}
		id := rh.Get("X-Request-Id")
		switch {
		case tt.wantEcho && id != tt.reqID:
			t.Errorf("%s: X-Request-Id %q, want the client's %q echoed", tt.name, id, tt.reqID)
		case !tt.wantEcho && !generated.MatchString(id):
			t.Errorf("%s: X-Request-Id %q, want a generated 16-hex-digit id", tt.name, id)
		}
		results[i] = sent{id: id, bytes: len(body)}
	}

	// Lines are flushed every 100ms; wait (bounded) for all of them.
	byID := map[string]map[string]any{}
	deadline := time.Now().Add(10 * time.Second)
	for len(byID) < len(tests) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		for _, r := range p.stdout.records(t) {
			if id, ok := r["request_id"].(string); ok && r["msg"] == "request" {
				byID[id] = r
			}
		}
	}
	for i, tt := range tests {
		r, ok := byID[results[i].id]
		if !ok {
			t.Errorf("%s: no access-log line with request_id %q", tt.name, results[i].id)
			continue
		}
		if r["method"] != tt.method || r["path"] != tt.route || r["status"] != float64(tt.status) || r["level"] != "INFO" {
			t.Errorf("%s: access log %v; want method %s, path %s, status %d, level INFO", tt.name, r, tt.method, tt.route, tt.status)
		}
		if r["bytes"] != float64(results[i].bytes) {
			t.Errorf("%s: access log bytes %v, response had %d", tt.name, r["bytes"], results[i].bytes)
		}
		if d, ok := r["duration_seconds"].(float64); !ok || d < 0 || d > 60 {
			t.Errorf("%s: access log duration_seconds %v", tt.name, r["duration_seconds"])
		}
		for _, k := range []string{"time", "msg"} {
			if _, ok := r[k]; !ok {
				t.Errorf("%s: access log has no %q: %v", tt.name, k, r)
			}
		}
	}
	p.signal(syscall.SIGINT) // SIGINT stops it as gracefully as SIGTERM
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
}

// TestDataDirLock: the bolt file is locked while a server runs (a second server on the
// directory fails fast instead of hanging or corrupting it), and released by a clean
// shutdown so a restart on the same directory starts at once with the data.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-listen-address", "127.0.0.1:0", "-data-dir", dir, "-access-log=false"}
	p := startProc(t, nil, args...)
	client := newClient(1)
	if status, _, _, err := do(client, http.MethodPut, p.url+"/api/buckets/kept", []byte("kept"), nil); err != nil || status != http.StatusCreated {
		t.Fatalf("PUT: %d, %v", status, err)
	}

	// bolt waits 2s for the lock; 15s bounds a slow start.
	code, _, stderr := runBinary(t, 15*time.Second, nil, args...)
	if code == 0 || !strings.Contains(stderr, "objects.db") {
		t.Errorf("second server on a locked directory: exit %d, stderr %q; want non-zero naming the file", code, stderr)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\nstderr:\n%s", code, p.stderr)
	}
	checkBolt(t, filepath.Join(dir, bolt.FileName))
	p2 := startProc(t, nil, args...)
	status, _, body, err := do(client, http.MethodGet, p2.url+"/api/buckets/kept", nil, nil)
	if err != nil || status != http.StatusOK || string(body) != "kept" {
		t.Errorf("GET after restart: %d %q, %v", status, body, err)
	}
}
