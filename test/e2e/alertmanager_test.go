package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhook is the test's own Alertmanager receiver: it records every notification, by the receiver that sent it.
type webhook struct {
	url string
	mu  sync.Mutex
	got []notification
}

// notification is the part of Alertmanager's webhook payload (version 4) the test reads.
type notification struct {
	Receiver     string            `json:"receiver"`
	Status       string            `json:"status"`
	GroupLabels  map[string]string `json:"groupLabels"`
	CommonLabels map[string]string `json:"commonLabels"`
	Alerts       []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
	path string
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var n notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook %s: %v", r.URL.Path, err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		n.path = r.URL.Path
		w.mu.Lock()
		w.got = append(w.got, n)
		w.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

func (w *webhook) notifications() []notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// testAlertmanagerConfig is deploy/alertmanager/alertmanager.yml with one change: each receiver gets a webhook
// to this test, at /<receiver name>. Routes, grouping, timing and inhibition stay as shipped.
func testAlertmanagerConfig(t *testing.T, hookURL string) string {
	t.Helper()
	raw, err := readRepo(t, "deploy/alertmanager/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inReceivers, names := false, []string{}
	receiver := regexp.MustCompile(`^  - name: (\w+)$`)
	for _, line := range strings.Split(raw, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '#' {
			inReceivers = strings.HasPrefix(line, "receivers:")
		}
		// A receiver with a real integration would be notified by this test: refuse.
		if inReceivers && strings.Contains(line, "_configs:") {
			t.Fatalf("deploy/alertmanager/alertmanager.yml: a receiver has an integration (%s); the test would notify it", strings.TrimSpace(line))
		}
		out = append(out, line)
		if m := receiver.FindStringSubmatch(line); inReceivers && m != nil {
			names = append(names, m[1])
			out = append(out, "    webhook_configs:", "      - url: "+hookURL+"/"+m[1], "        send_resolved: false")
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"default", "page", "ticket"}) {
		t.Fatalf("deploy/alertmanager/alertmanager.yml: receivers %q, want default, page and ticket; update the test", names)
	}
	return strings.Join(out, "\n")
}

// amAlert is an alert as Alertmanager's API v2 lists it.
type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	Status   struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// checkDelivery requires what docs/alerts.md promises for the injected 5% errors: the availability page alerts
// reach the page receiver, one notification per group of (alertname, slo); the ticket alerts of the same SLO,
// which fire too, are inhibited by the page and reach nobody; nothing reaches the default receiver.
func checkDelivery(ctx context.Context, t *testing.T, hook *webhook, amURL string) {
	raw, err := readRepo(t, "deploy/alertmanager/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  group_wait: (\S+)$`).FindStringSubmatch(raw)
	if m == nil {
		t.Fatal("deploy/alertmanager/alertmanager.yml: no route group_wait")
	}
	groupWait, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}

	// The page: sent group_wait after the alert reached Alertmanager.
	var page *notification
	deadline := time.Now().Add(groupWait + 30*time.Second)
	for page == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range hook.notifications() {
			if n.Receiver == "page" && n.GroupLabels["alertname"] == "StorageApiAvailabilityBurnRate1h" {
				page = &n
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if page == nil {
		t.Fatalf("no notification of StorageApiAvailabilityBurnRate1h reached the page receiver within %v; got %+v", groupWait+30*time.Second, hook.notifications())
	}
	if page.path != "/page" || page.Status != "firing" || len(page.Alerts) == 0 {
		t.Errorf("page notification: path %s, status %s, %d alerts", page.path, page.Status, len(page.Alerts))
	}
	// Grouped by alertname and slo, as docs/alerts.md says.
	if want := map[string]string{"alertname": "StorageApiAvailabilityBurnRate1h", "slo": "availability"}; !maps.Equal(page.GroupLabels, want) {
		t.Errorf("page notification grouped by %v, want %v", page.GroupLabels, want)
	}
	for _, a := range page.Alerts {
		if a.Labels["severity"] != "page" || a.Annotations["runbook_url"] == "" || a.Annotations["summary"] == "" {
			t.Errorf("paged alert labels %v annotations %v: want severity page, a summary and a runbook_url", a.Labels, a.Annotations)
		}
	}

	// The ticket alerts fire in Prometheus too (every window sees 5% errors) and must be inhibited.
	var alerts []amAlert
	if err := getJSON(ctx, amURL+"/api/v2/alerts", &alerts); err != nil {
		t.Fatal(err)
	}
	var tickets int
	var lastTicket time.Time
	for _, a := range alerts {
		switch a.Labels["severity"] {
		case "ticket":
			tickets++
			if a.Labels["slo"] != "availability" || a.Status.State != "suppressed" || len(a.Status.InhibitedBy) == 0 {
				t.Errorf("ticket alert %v: state %s, inhibited by %v; want suppressed by the availability page", a.Labels, a.Status.State, a.Status.InhibitedBy)
			}
			if a.StartsAt.After(lastTicket) {
				lastTicket = a.StartsAt
			}
		case "page":
			if a.Labels["slo"] != "availability" || a.Status.State != "active" {
				t.Errorf("page alert %v: state %s, want an active availability alert", a.Labels, a.Status.State)
			}
		}
	}
	if tickets == 0 {
		t.Errorf("no ticket alert reached Alertmanager: the inhibition was not exercised; alerts %+v", alerts)
	}
	// Give the ticket groups their group_wait before concluding that nothing was sent to them.
	if wait := time.Until(lastTicket.Add(groupWait + 2*time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	for _, n := range hook.notifications() {
		if n.Receiver != "page" {
			t.Errorf("receiver %s was notified (%s, group %v): only the page receiver should be", n.Receiver, n.Status, n.GroupLabels)
		}
	}
	if !t.Failed() {
		t.Logf("%d notifications, all to page; %d ticket alerts inhibited", len(hook.notifications()), tickets)
	}
}

// getJSON GETs url and decodes its JSON answer into v; an answer that is not JSON is an
// error that shows it.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	return nil
}

func readRepo(t *testing.T, rel string) (string, error) {
	t.Helper()
	b, err := os.ReadFile(absPath(t, rel))
	return string(b), err
}
