// Package grafana is the one model of the Grafana dashboard JSON this repository ships
// (deploy/grafana/dashboards): the fields the static checks in deploy/ and the end-to-end test
// in test/e2e read, so both read the dashboard the same way.
package grafana

import "encoding/json"

// Datasource names a datasource by type and uid (a variable such as ${datasource} in uid).
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Datasource *Datasource `json:"datasource"`
	Expr       string      `json:"expr"`
	Instant    bool        `json:"instant"`
}

// Panel is a dashboard panel, or a row holding collapsed panels in Panels.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"` // panels of a collapsed row
}

// Variable is a templating variable.
type Variable struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Query is a JSON string for a datasource variable and an object for a query variable:
	// QueryText reads either.
	Query      json.RawMessage `json:"query"`
	Datasource *Datasource     `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Multi      bool            `json:"multi"`
	Current    struct {
		Value []string `json:"value"`
	} `json:"current"`
}

// QueryText returns the variable's query: the string itself, or the object's "query" field.
func (v Variable) QueryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o) // neither form: no query
	return o.Query
}

// Dashboard is the dashboard document.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Flatten lists every panel, those inside collapsed rows included, rows first.
func Flatten(ps []Panel) []Panel {
	var out []Panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, Flatten(p.Panels)...)
	}
	return out
}
