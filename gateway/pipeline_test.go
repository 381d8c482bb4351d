package gateway_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/butterfn/butter/gateway"
)

// TestPipelineGrammar: the ad-hoc endpoint, the Go API and routes read
// steps with package pipeline's grammar: a quoted value keeps its blanks
// and its "|", and a malformed expression answers 400 naming the fault.
func TestPipelineGrammar(t *testing.T) {
	b := startPool(t, standardFns()...)
	g, base := startGateway(t, resolverFor(b.addr), []gateway.Route{
		{Method: "POST", Path: "/quoted", Project: "test", Pipeline: []string{`sed e="s/a b/c|d/"`, "tr"}},
	}, gateway.WithInvokeAuth(gateway.AuthNone))

	hdr := map[string]string{"Butter-Pipeline": `sed e="s/a b/c|d/" | tr`}
	if a := post(t, base+"/v1/invoke/test", "a b\n", hdr); a.code != 200 || a.body != "C|D\n" {
		t.Errorf("a quoted option through Butter-Pipeline: %d %q %+v", a.code, a.body, a.err)
	}
	q := url.Values{"pipeline": {`sed e="s/a b/x y/"`}}
	if a := post(t, base+"/v1/invoke/test?"+q.Encode(), "a b\n", nil); a.code != 200 || a.body != "x y\n" {
		t.Errorf("a quoted option through ?pipeline=: %d %q %+v", a.code, a.body, a.err)
	}
	if a := post(t, base+"/quoted", "a b\n", nil); a.code != 200 || a.body != "C|D\n" {
		t.Errorf("a route's quoted option: %d %q %+v", a.code, a.body, a.err)
	}
	var out strings.Builder
	if err := g.Invoke(t.Context(), "test", []string{`sed e="s/a b/c d/"`, "tr"}, strings.NewReader("a b"), &out); err != nil || out.String() != "C D" {
		t.Errorf("Invoke with a quoted option: %q %v", out.String(), err)
	}

	for _, c := range []struct{ expr, want string }{
		{`sed e="s/a/b/ | tr`, "unterminated quote"},
		{"cat | tr |", "empty step 3"},
		{"cat || tr", "empty step 2"},
		{"s.ed", "a function name is letters"},
		{"sed e", `option "e" is not name=value`},
	} {
		a := post(t, base+"/v1/invoke/test", "x", map[string]string{"Butter-Pipeline": c.expr})
		if a.code != 400 || !strings.Contains(a.err.Error, c.want) {
			t.Errorf("Butter-Pipeline %q: %d %+v, want 400 with %q", c.expr, a.code, a.err, c.want)
		}
	}
	if err := g.Invoke(t.Context(), "test", []string{"cat | tr"}, strings.NewReader("x"), &out); err == nil || !strings.Contains(err.Error(), "holds a |") {
		t.Errorf("Invoke with two steps in one: %v", err)
	}
	if err := g.SetRoutes([]gateway.Route{{Method: "POST", Path: "/two", Project: "test", Pipeline: []string{"cat | tr"}}}); err == nil || !strings.Contains(err.Error(), "holds a |") {
		t.Errorf("a route step holding two steps: %v", err)
	}
}
