package grafana

import (
	"encoding/json"
	"testing"
)

func TestQueryTextAndFlatten(t *testing.T) {
	var d Dashboard
	raw := `{"uid":"u","panels":[{"type":"row","panels":[{"title":"inner","targets":[{"expr":"up"}]}]},{"title":"top"}],
		"templating":{"list":[{"name":"datasource","query":"prometheus"},{"name":"job","query":{"query":"label_values(up, job)"}}]}}`
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	if got := d.Templating.List[0].QueryText(); got != "prometheus" {
		t.Errorf("string query = %q", got)
	}
	if got := d.Templating.List[1].QueryText(); got != "label_values(up, job)" {
		t.Errorf("object query = %q", got)
	}
	var titles []string
	for _, p := range Flatten(d.Panels) {
		titles = append(titles, p.Type+":"+p.Title)
	}
	if len(titles) != 3 || titles[1] != ":inner" || titles[2] != ":top" {
		t.Errorf("Flatten = %q, want the row, inner, top", titles)
	}
}
