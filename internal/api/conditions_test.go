package api

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParseCondition(t *testing.T) {
	tests := []struct {
		name                 string
		header               http.Header
		ifMatch, ifNoneMatch []string // nil: absent
		wantErr              bool
	}{
		{"none", http.Header{}, nil, nil, false},
		{"if-match star", http.Header{"If-Match": {"*"}}, []string{"*"}, nil, false},
		{"if-match list", http.Header{"If-Match": {`"a", "b"`}}, []string{"a", "b"}, nil, false},
		{"if-match lines", http.Header{"If-Match": {`"a"`, `"b"`}}, []string{"a", "b"}, nil, false},
		{"if-match weak dropped", http.Header{"If-Match": {`W/"a", "b"`}}, []string{"b"}, nil, false},
		{"if-match only weak", http.Header{"If-Match": {`W/"a"`}}, []string{}, nil, false},
		{"if-none-match weak kept", http.Header{"If-None-Match": {`W/"a", "b"`}}, nil, []string{"a", "b"}, false},
		{"if-none-match star", http.Header{"If-None-Match": {" * "}}, nil, []string{"*"}, false},
		{"both", http.Header{"If-Match": {`"a"`}, "If-None-Match": {`"b"`}}, []string{"a"}, []string{"b"}, false},
		{"empty list elements", http.Header{"If-Match": {`, "a",,`}}, []string{"a"}, nil, false},
		{"quoted star is a tag", http.Header{"If-Match": {`"*"`}}, []string{}, nil, false},
		{"empty value", http.Header{"If-Match": {""}}, nil, nil, true},
		{"unquoted", http.Header{"If-Match": {"abc"}}, nil, nil, true},
		{"half quoted", http.Header{"If-Match": {`"abc`}}, nil, nil, true},
		{"quote inside", http.Header{"If-None-Match": {`"a"b"`}}, nil, nil, true},
		{"space inside", http.Header{"If-Match": {`"a b"`}}, nil, nil, true},
		{"star and tag", http.Header{"If-Match": {`*, "a"`}}, nil, nil, true},
		{"too many", http.Header{"If-Match": {strings.Repeat(`"a",`, maxConditionTags+1)}}, nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCondition(tc.header)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(c.IfMatch, tc.ifMatch) || (c.IfMatch == nil) != (tc.ifMatch == nil) {
				t.Errorf("IfMatch = %#v, want %#v", c.IfMatch, tc.ifMatch)
			}
			if !slices.Equal(c.IfNoneMatch, tc.ifNoneMatch) || (c.IfNoneMatch == nil) != (tc.ifNoneMatch == nil) {
				t.Errorf("IfNoneMatch = %#v, want %#v", c.IfNoneMatch, tc.ifNoneMatch)
			}
		})
	}
}

// FuzzParseCondition: any header value parses or is refused, never panics, and what
// parses is "*" alone or tags free of quotes.
func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"*", `"a"`, `W/"a", "b"`, `"a`, `, ,`, `*, "a"`, "\x00", `W/`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseCondition(http.Header{"If-Match": {v}, "If-None-Match": {v}})
		if err != nil {
			return
		}
		for _, list := range [][]string{c.IfMatch, c.IfNoneMatch} {
			for _, tag := range list {
				if strings.ContainsAny(tag, "\" \t") || (tag == "*" && len(list) > 1) {
					t.Fatalf("parsed %q into %#v", v, list)
				}
			}
		}
	})
}
