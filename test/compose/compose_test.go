package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// The default stack is what `docker compose up` starts; the s3 profile adds to it.
var (
	defaultServices = []string{"alertmanager", "grafana", "jaeger", "loadgen", "prometheus", "storage_api"}
	s3Services      = []string{"loadgen_s3", "storage_api_s3", "versitygw"}
)

func TestComposeServices(t *testing.T) {
	def := loadProject(t, nil)
	got := def.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, defaultServices) {
		t.Errorf("docker compose up starts %v, want %v", got, defaultServices)
	}
	all := allServices(t).ServiceNames()
	slices.Sort(all)
	want := slices.Concat(defaultServices, s3Services)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("with every profile: %v, want %v", all, want)
	}
	for _, name := range s3Services {
		if s := service(t, allServices(t), name); !slices.Equal(s.Profiles, []string{"s3"}) {
			t.Errorf("%s: profiles %v, want [s3]", name, s.Profiles)
		}
	}
	if r := service(t, allServices(t), "storage_api_s3").Deploy; r == nil || r.Replicas == nil || *r.Replicas != 2 {
		t.Errorf("storage_api_s3 should run 2 replicas, deploy: %+v", r)
	}
}

var versionTag = regexp.MustCompile(`^v?\d+\.\d+\.\d+$`)

func TestComposeImagesPinned(t *testing.T) {
	for name, s := range allServices(t).Services {
		t.Run(name, func(t *testing.T) {
			tag := imageTag(s.Image)
			switch {
			case s.Image == "":
				t.Error("no image name")
			case tag == "" || tag == "latest":
				t.Errorf("image %q: want an explicit tag, not latest or none", s.Image)
			case s.Build == nil && !versionTag.MatchString(tag):
				// Pulled images need a full release version: floating tags like "13" move.
				t.Errorf("image %q: want a full release tag like v1.2.3", s.Image)
			}
		})
	}
}

// The stack's versions are the ones tools/install.sh builds for the tests, so
// `promtool check config` and the versitygw tests exercise what compose runs.
func TestComposeVersionsMatchToolPins(t *testing.T) {
	root := testkit.RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "tools", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	pin := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)`).FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("tools/install.sh has no %s=", name)
		}
		return m[1]
	}
	// Prometheus' Go module v0.3XX.Y is release v3.XX.Y.
	prom := pin("PROMETHEUS_VERSION")
	m := regexp.MustCompile(`^v0\.3(\d\d)\.(\d+)$`).FindStringSubmatch(prom)
	if m == nil {
		t.Fatalf("PROMETHEUS_VERSION=%s is not a v0.3XX.Y module version", prom)
	}
	release := "v3." + strings.TrimLeft(m[1], "0") + "." + m[2]
	if m[1] == "00" {
		release = "v3.0." + m[2]
	}
	p := allServices(t)
	for _, c := range []struct{ service, want string }{
		{"prometheus", "prom/prometheus:" + release},
		{"alertmanager", "prom/alertmanager:" + pin("ALERTMANAGER_VERSION")},
		{"versitygw", "versity/versitygw:" + pin("VERSITYGW_VERSION")},
	} {
		if got := service(t, p, c.service).Image; got != c.want {
			t.Errorf("%s image %s, want %s (the version tools/install.sh pins)", c.service, got, c.want)
		}
	}
	if g := service(t, p, "grafana").Image; !regexp.MustCompile(`^grafana/grafana:13\.\d+\.\d+$`).MatchString(g) {
		t.Errorf("grafana image %s, want grafana/grafana:13.x.y (grafana-oss is discontinued)", g)
	}
}

func TestComposeHealthchecks(t *testing.T) {
	for name, s := range allServices(t).Services {
		t.Run(name, func(t *testing.T) {
			h := s.HealthCheck
			if h == nil || h.Disable || len(h.Test) < 2 {
				t.Fatalf("no healthcheck: %+v", h)
			}
			if h.Test[0] != "CMD" {
				t.Errorf("healthcheck %q: want the CMD vector form (our image has no shell)", h.Test)
			}
			if h.Interval == nil || h.Timeout == nil || h.Retries == nil {
				t.Errorf("healthcheck should set interval, timeout and retries: %+v", h)
			}
		})
	}
}

func TestComposeDependsOnHealthy(t *testing.T) {
	p := allServices(t)
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, d.Condition)
			}
		}
	}
	for _, c := range []struct{ from, to string }{
		{"loadgen", "storage_api"},
		{"grafana", "prometheus"},
		{"storage_api_s3", "versitygw"},
		{"loadgen_s3", "storage_api_s3"},
	} {
		if _, ok := service(t, p, c.from).DependsOn[c.to]; !ok {
			t.Errorf("%s should wait for %s", c.from, c.to)
		}
	}
}

func TestComposePortsLocalOnly(t *testing.T) {
	for name, s := range allServices(t).Services {
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%d on %q, want 127.0.0.1", name, port.Published, port.Target, port.HostIP)
			}
		}
	}
	// The address is a knob: BIND_ADDRESS=0.0.0.0 opens the stack to the network.
	for _, port := range service(t, loadProject(t, map[string]string{"BIND_ADDRESS": "0.0.0.0"}), "grafana").Ports {
		if port.HostIP != "0.0.0.0" {
			t.Errorf("BIND_ADDRESS=0.0.0.0 did not change the bind address: %+v", port)
		}
	}
	want := map[string]string{"storage_api": "5000", "prometheus": "9090", "alertmanager": "9093", "grafana": "3000"}
	p := allServices(t)
	for name, published := range want {
		ok := false
		for _, port := range service(t, p, name).Ports {
			ok = ok || port.Published == published
		}
		if !ok {
			t.Errorf("%s should publish port %s", name, published)
		}
	}
}

func TestComposeMounts(t *testing.T) {
	root := testkit.RepoRoot(t)
	p := allServices(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				rel, err := filepath.Rel(root, v.Source)
				if err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s mounts %s from outside the repository", name, v.Source)
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					// Docker would create a missing source as an empty root-owned directory.
					t.Errorf("%s mounts %s, which does not exist in the repository", name, rel)
				}
				if !v.ReadOnly {
					t.Errorf("%s mounts %s read-write: configuration mounts should be :ro", name, rel)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s uses volume %q, not declared under volumes:", name, v.Source)
				}
			}
		}
	}

	// Files the services are told to read through those mounts exist on the host.
	for _, c := range []struct{ service, path string }{
		{"prometheus", "/etc/prometheus/prometheus.yml"},
		{"alertmanager", "/etc/alertmanager/alertmanager.yml"},
		{"grafana", "/var/lib/grafana/dashboards/storage-api.json"},
		{"grafana", "/etc/grafana/provisioning"},
		{"jaeger", "/etc/jaeger/config.yaml"},
	} {
		host := hostPathFor(service(t, p, c.service), c.path)
		if host == "" {
			t.Errorf("%s: no bind mount provides %s", c.service, c.path)
			continue
		}
		if _, err := os.Stat(host); err != nil {
			t.Errorf("%s reads %s, i.e. %s on the host: %v", c.service, c.path, host, err)
		}
	}
	prom := service(t, p, "prometheus")
	for _, flag := range []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
		"--enable-feature=exemplar-storage"} {
		if !slices.Contains(prom.Command, flag) {
			t.Errorf("prometheus command %q lacks %s", prom.Command, flag)
		}
	}
	if !slices.Contains(service(t, p, "alertmanager").Command, "--config.file=/etc/alertmanager/alertmanager.yml") {
		t.Errorf("alertmanager should read /etc/alertmanager/alertmanager.yml")
	}
	g := environ(service(t, p, "grafana").Environment)
	if home := g["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "/var/lib/grafana/dashboards/storage-api.json" {
		t.Errorf("grafana home dashboard %q", home)
	}
}

// Our containers run with the least privilege the issue asks for.
func TestComposeHardening(t *testing.T) {
	p := allServices(t)
	for name, s := range p.Services {
		if s.Privileged {
			t.Errorf("%s is privileged", name)
		}
		if len(s.CapAdd) > 0 {
			t.Errorf("%s adds capabilities %v", name, s.CapAdd)
		}
		if !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: cap_drop %v, want [ALL]", name, s.CapDrop)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: security_opt %v lacks no-new-privileges:true", name, s.SecurityOpt)
		}
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
	}
	for _, name := range []string{"storage_api", "loadgen", "storage_api_s3", "loadgen_s3", "prometheus", "alertmanager", "jaeger"} {
		if !service(t, p, name).ReadOnly {
			t.Errorf("%s should have read_only: true", name)
		}
	}
	api := service(t, p, "storage_api")
	if api.Hostname != "storage_api" {
		t.Errorf("storage_api hostname %q: Prometheus scrapes storage_api:5000", api.Hostname)
	}
	if api.Build == nil || api.Build.Context != testkit.RepoRoot(t) {
		t.Errorf("storage_api should be built from the repository root: %+v", api.Build)
	}
	dataOnVolume := false
	for _, v := range api.Volumes {
		dataOnVolume = dataOnVolume || (v.Type == types.VolumeTypeVolume && v.Target == "/data")
	}
	if env := environ(api.Environment); !dataOnVolume || env["DATA_DIR"] != "/data" || env["STORAGE_BACKEND"] != "bolt" {
		t.Errorf("storage_api should keep its bolt store in a named volume at /data (env %v)", env)
	}
	if api.StopGracePeriod == nil {
		t.Error("storage_api should set stop_grace_period above its SHUTDOWN_TIMEOUT")
	}
}

// Knobs documented in docs/compose.md: host variables reach the containers, with
// harmless defaults when unset.
func TestComposeKnobs(t *testing.T) {
	def := loadProject(t, nil)
	api := environ(service(t, def, "storage_api").Environment)
	for k, want := range map[string]string{"FAULT_ERROR_RATIO": "0", "FAULT_LATENCY": "0s", "FAULT_LATENCY_RATIO": "0"} {
		if api[k] != want {
			t.Errorf("default %s=%q, want %q", k, api[k], want)
		}
	}
	gf := environ(service(t, def, "grafana").Environment)
	if gf["GF_SECURITY_ADMIN_PASSWORD"] != "admin" {
		t.Errorf("dev default Grafana password %q, want admin (documented as dev-only)", gf["GF_SECURITY_ADMIN_PASSWORD"])
	}
	if gf["GF_AUTH_BASIC_ENABLED"] == "true" || gf["GF_AUTH_ANONYMOUS_ORG_ROLE"] != "Viewer" {
		t.Errorf("anonymous Grafana users must be Viewers only: %v", gf)
	}

	set := loadProject(t, map[string]string{
		"FAULT_ERROR_RATIO": "0.05", "FAULT_LATENCY": "250ms", "FAULT_LATENCY_RATIO": "0.1",
		"GRAFANA_ADMIN_PASSWORD": "s3cret-from-host", "LOADGEN_RATE": "50",
	}, "*")
	for _, name := range []string{"storage_api", "storage_api_s3"} {
		env := environ(service(t, set, name).Environment)
		if env["FAULT_ERROR_RATIO"] != "0.05" || env["FAULT_LATENCY"] != "250ms" || env["FAULT_LATENCY_RATIO"] != "0.1" {
			t.Errorf("%s ignores the FAULT_* host variables: %v", name, env)
		}
	}
	if got := environ(service(t, set, "grafana").Environment)["GF_SECURITY_ADMIN_PASSWORD"]; got != "s3cret-from-host" {
		t.Errorf("GRAFANA_ADMIN_PASSWORD not used: %q", got)
	}
	if got := environ(service(t, set, "loadgen").Environment)["LOADGEN_RATE"]; got != "50" {
		t.Errorf("LOADGEN_RATE not used: %q", got)
	}
}

func TestComposeLoadgen(t *testing.T) {
	p := allServices(t)
	for name, target := range map[string]string{"loadgen": "http://storage_api:5000", "loadgen_s3": "http://storage_api_s3:5000"} {
		s := service(t, p, name)
		if !slices.Equal(s.Entrypoint, []string{"/usr/local/bin/loadgen"}) {
			t.Errorf("%s entrypoint %q", name, s.Entrypoint)
		}
		env := environ(s.Environment)
		if env["LOADGEN_TARGET"] != target || env["LOADGEN_METRICS_ADDRESS"] != ":9101" || env["LOADGEN_DURATION"] != "0" {
			t.Errorf("%s environment %v: want target %s, metrics on :9101 (Prometheus job loadgen), no end", name, env, target)
		}
		if s.Image != service(t, p, "storage_api").Image {
			t.Errorf("%s runs %s, want the API's image", name, s.Image)
		}
	}
}

// TestComposeMemoryLimit: every API container has a memory limit, and tells the server
// the same number (MEMORY_LIMIT), so the Go soft limit and the admission defaults fit it;
// API_MEMORY_LIMIT changes both together.
func TestComposeMemoryLimit(t *testing.T) {
	for _, env := range []map[string]string{nil, {"API_MEMORY_LIMIT": "536870912"}} {
		p := loadProject(t, env, "*")
		for _, name := range []string{"storage_api", "storage_api_s3"} {
			s := service(t, p, name)
			got := environ(s.Environment)["MEMORY_LIMIT"]
			if s.MemLimit == 0 || got != fmt.Sprint(int64(s.MemLimit)) {
				t.Errorf("%s (env %v): mem_limit %d, MEMORY_LIMIT %q: want both set and equal", name, env, s.MemLimit, got)
			}
			if int64(s.MemLimit) < 256<<20 {
				t.Errorf("%s: mem_limit %d is below the 256 MiB the admission defaults are sized for", name, s.MemLimit)
			}
		}
	}
}
