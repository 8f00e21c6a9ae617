// Package apiserver checks the chart against a real kube-apiserver and etcd on 127.0.0.1, built
// from the Go module proxy by install.sh: helm install --dry-run=server, a real install (objects
// stored, no controllers run), the stored ServiceMonitor keeping its fields, and every pod template
// admitted by Pod Security "restricted" (enforced on the namespace, checked with dry-run pod creates).
package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

type cluster struct {
	root                             string // the repository
	url, token, kubeconfig, helmHome string
	client                           *http.Client
	helmBin, crdDir                  string
}

// apiReady waits until kube-apiserver's /readyz answers 200 with the admin token, failing at
// once if the server exited.
func (c *cluster) apiReady(t *testing.T, p *testkit.Proc, within time.Duration) {
	t.Helper()
	testkit.WaitHTTPWith(t, c.client, http.Header{"Authorization": {"Bearer " + c.token}}, c.url+"/readyz", http.StatusOK, within, p)
}

// do sends one API request and decodes the JSON answer into out (when not nil).
func (c *cluster) do(method, path string, body any, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %w: %s", method, path, err, tail(data, 500))
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, tail(data, 2000))
	}
	return resp.StatusCode, resp.Header, nil
}

// tail is the last n bytes of b: where an answer's error usually is.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *cluster) helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.helmBin, args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+c.kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(c.helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(c.helmHome, "data"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// startCluster runs etcd and kube-apiserver on free 127.0.0.1 ports with a static admin token.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	root := testkit.RepoRoot(t)
	const hint = "run test/k8s/apiserver/install.sh"
	etcd := testkit.Require(t, filepath.Join(root, ".tools", "bin", "etcd"), hint)
	apiserver := testkit.Require(t, filepath.Join(root, ".tools", "bin", "kube-apiserver"), hint)
	crdDir := filepath.Join(root, ".tools", "k8s-crds")
	testkit.Require(t, filepath.Join(crdDir, "monitoring.coreos.com_servicemonitors.yaml"), hint)

	dir := t.TempDir()
	etcdURL, peerURL, apiAddr := "http://"+testkit.FreeAddr(t), "http://"+testkit.FreeAddr(t), testkit.FreeAddr(t)
	etcdProc := testkit.Start(t, exec.Command(etcd,
		"--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "warn"))

	c := &cluster{
		root:     root,
		url:      "https://" + apiAddr,
		helmHome: filepath.Join(dir, "helm"),
		helmBin:  testkit.Tool(t, "helm"),
		crdDir:   crdDir,
		// The apiserver's certificate is self-signed for this run; only 127.0.0.1 is ever contacted.
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}
	testkit.WaitHTTP(t, etcdURL+"/health", http.StatusOK, 60*time.Second, etcdProc)

	tok := make([]byte, 16)
	rand.Read(tok)
	c.token = hex.EncodeToString(tok)
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", c.token))
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	writeFile(t, saKey, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	writeFile(t, saPub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))

	_, apiPort, err := net.SplitHostPort(apiAddr)
	if err != nil {
		t.Fatal(err)
	}
	apiProc := testkit.Start(t, exec.Command(apiserver,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", apiPort, "--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		// Loopback cannot be advertised through the kubernetes Service's endpoints; nothing needs them here.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false"))
	c.apiReady(t, apiProc, 120*time.Second)

	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	writeFile(t, c.kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`, c.url, c.token))
	return c
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// installCRDs installs the ServiceMonitor and PrometheusRule CRDs through a throwaway chart: helm
// creates the CRDs of a chart's crds/ folder and waits until they are established.
func (c *cluster) installCRDs(t *testing.T) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "monitoring-crds")
	if err := os.MkdirAll(filepath.Join(dir, "crds"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "Chart.yaml"), "apiVersion: v2\nname: monitoring-crds\nversion: 0.0.1\n")
	files, _ := filepath.Glob(filepath.Join(c.crdDir, "*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "crds", filepath.Base(f)), string(b))
	}
	if _, err := c.helm(t, "install", "monitoring-crds", dir, "--namespace", "default"); err != nil {
		t.Fatal(err)
	}
}

func TestChartAgainstAPIServer(t *testing.T) {
	c := startCluster(t)
	// The namespace enforces the profile the chart claims to meet, as deploy/k8s/up.sh sets it up.
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{
		"name": "storage",
		"labels": map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		},
	}}
	if _, _, err := c.do(http.MethodPost, "/api/v1/namespaces", ns, nil); err != nil {
		t.Fatal(err)
	}
	c.installCRDs(t)

	kindValues := filepath.Join(c.root, "deploy", "k8s", "storage-api-values.yaml")
	chartDir := filepath.Join(c.root, "deploy", "helm", "storage-api")
	s3 := []string{"--set", "storage.backend=s3", "--set", "storage.s3.bucket=objects", "--set", "storage.s3.credentialsSecret.name=s3"}
	cases := []struct {
		name string
		args []string
		want []string // kinds that must be in the manifest
	}{
		{"defaults", nil, []string{"kind: Deployment"}},
		{"kind values", []string{"--values", kindValues}, []string{"kind: ServiceMonitor", "kind: PrometheusRule", "kind: NetworkPolicy"}},
		{"s3, every feature", append(s3, "--values", kindValues, "--set", "persistence.enabled=false"), []string{"kind: HorizontalPodAutoscaler", "kind: ServiceMonitor"}},
	}
	for _, tc := range cases {
		t.Run("dry-run=server/"+tc.name, func(t *testing.T) {
			args := append([]string{"install", "storage-api", chartDir, "--namespace", "storage", "--dry-run=server"}, tc.args...)
			out, err := c.helm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the server-side dry run rendered no %q (capabilities from the API server?)", w)
				}
			}
		})
	}

	// A real install stores every object (nothing runs: no controllers, no nodes).
	if _, err := c.helm(t, "install", "storage-api", chartDir, "--namespace", "storage", "--values", kindValues); err != nil {
		t.Fatal(err)
	}

	t.Run("stored ServiceMonitor keeps its fields", func(t *testing.T) {
		var sm struct {
			Spec map[string]any `json:"spec"`
		}
		if _, _, err := c.do(http.MethodGet, "/apis/monitoring.coreos.com/v1/namespaces/storage/servicemonitors/storage-api", nil, &sm); err != nil {
			t.Fatal(err)
		}
		// A field the CRD schema lacks would be pruned silently on create.
		for _, f := range []string{"scrapeNativeHistograms", "scrapeClassicHistograms", "endpoints", "selector", "namespaceSelector"} {
			if _, ok := sm.Spec[f]; !ok {
				t.Errorf("stored ServiceMonitor lost spec.%s", f)
			}
		}
	})

	t.Run("pod templates admitted by Pod Security restricted", func(t *testing.T) {
		var deps struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
				Spec     struct {
					Template struct {
						Metadata map[string]any `json:"metadata"`
						Spec     map[string]any `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			} `json:"items"`
		}
		if _, _, err := c.do(http.MethodGet, "/apis/apps/v1/namespaces/storage/deployments", nil, &deps); err != nil {
			t.Fatal(err)
		}
		if len(deps.Items) != 2 {
			t.Fatalf("%d Deployments stored, want 2 (API and loadgen)", len(deps.Items))
		}
		for _, d := range deps.Items {
			pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"generateName": d.Metadata.Name + "-", "labels": d.Spec.Template.Metadata["labels"]},
				"spec":     d.Spec.Template.Spec}
			if _, _, err := c.do(http.MethodPost, "/api/v1/namespaces/storage/pods?dryRun=All", pod, nil); err != nil {
				t.Errorf("Deployment %s: its pod is refused: %v", d.Metadata.Name, err)
			}
		}
		// Control: the enforcement is on, so a pod without the security settings is refused.
		bad := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "plain"},
			// The chart's ServiceAccount: no controller-manager here creates "default".
			"spec": map[string]any{"serviceAccountName": "storage-api", "containers": []any{map[string]any{"name": "c", "image": "busybox:1.37"}}}}
		code, _, err := c.do(http.MethodPost, "/api/v1/namespaces/storage/pods?dryRun=All", bad, nil)
		if err == nil || code != http.StatusForbidden || !strings.Contains(err.Error(), "PodSecurity") {
			t.Errorf("a pod violating restricted was not refused by PodSecurity (status %d, %v)", code, err)
		}
	})
}
