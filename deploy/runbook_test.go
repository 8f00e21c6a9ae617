package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runbookBase is where docs/alerts.md is published; each alert's runbook_url is this plus the anchor of its
// section.
const runbookBase = "https://github.com/sre-instrumentation/storage-api/blob/main/docs/alerts.md#"

// githubAnchor is the anchor GitHub gives a Markdown heading: lower case, punctuation other than hyphens and
// underscores dropped, spaces turned into hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGithubAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"StorageApiTargetDown":                         "storageapitargetdown",
		"StorageApiAvailabilityBurnRate1h / 6h (page)": "storageapiavailabilityburnrate1h--6h-page",
		"The SLO period":                               "the-slo-period",
	} {
		if got := githubAnchor(in); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunbookURLs requires every alerting rule to carry a runbook_url pointing at an existing section of
// docs/alerts.md, one section per alert, named after it.
func TestRunbookURLs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs/alerts.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} +(.+)$`).FindAllStringSubmatch(string(doc), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	rules, err := filepath.Glob(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	alert := regexp.MustCompile(`^\s*- alert: *(\S+)`)
	runbook := regexp.MustCompile(`^\s*runbook_url: *(\S+)`)
	n := 0
	for _, f := range rules {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Alerting rules are a list; each rule's lines follow its "- alert:" line until the next rule.
		var name, url string
		flush := func() {
			if name == "" {
				return
			}
			n++
			want := runbookBase + strings.ToLower(name)
			switch {
			case url == "":
				t.Errorf("%s: alert %s has no runbook_url annotation", filepath.Base(f), name)
			case url != want:
				t.Errorf("%s: alert %s: runbook_url %s, want %s", filepath.Base(f), name, url, want)
			case !anchors[strings.ToLower(name)]:
				t.Errorf("alert %s: docs/alerts.md has no section \"### %s\" for its runbook_url", name, name)
			}
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if m := alert.FindStringSubmatch(line); m != nil {
				flush()
				name, url = m[1], ""
			} else if strings.HasPrefix(strings.TrimSpace(line), "- record:") || strings.HasPrefix(strings.TrimSpace(line), "- name:") {
				flush()
				name, url = "", ""
			} else if m := runbook.FindStringSubmatch(line); m != nil {
				url = m[1]
			}
		}
		flush()
	}
	if n == 0 {
		t.Fatal("no alerting rules found")
	}
}
