package pool_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/names"
)

// TestHeadRules: what the pool does with a worker's HEAD
// (docs/worker-protocol.md, "HEAD"), through its invoke endpoint with a
// real Python worker: headers a function may not set are dropped and a
// status outside 200-599 is not set (200, Butter-Status 0); a HEAD after
// output, a second HEAD and a HEAD that is not JSON are ignored.
func TestHeadRules(t *testing.T) {
	_, srv := sdkPool(t, nil, testdataFn("head", "python", "headfn", "main.handle"))

	a := invoke(t, srv, "head", strings.NewReader("forbidden"), nil)
	if a.code != 200 || a.body != "forbidden" || a.header.Get(names.HeaderStatus) != "0" {
		t.Errorf("forbidden: %d %q Butter-Status %q, want 200 and Butter-Status 0 (headers only)", a.code, a.body, a.header.Get(names.HeaderStatus))
	}
	if got := a.header.Values("X-Ok"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("forbidden: X-Ok %q, want 1 and 2", got)
	}
	for _, h := range []string{"Connection", "Transfer-Encoding", "Butter-Extra", "Bad Name", "X-Bad-Value"} {
		if v := a.header.Values(h); len(v) > 0 {
			t.Errorf("forbidden: %s %q reached the caller", h, v)
		}
	}
	if v := a.header.Get("X-Request-Id"); v == "no" {
		t.Errorf("forbidden: the function set X-Request-Id")
	}

	a = invoke(t, srv, "head", strings.NewReader("late"), nil)
	if a.code != 200 || a.body != "early output" || a.header.Get("X-Late") != "" || a.header.Get(names.HeaderStatus) != "" {
		t.Errorf("a HEAD after output: %d %q %v, want 200, the output, no X-Late, no Butter-Status", a.code, a.body, a.header)
	}
	a = invoke(t, srv, "head", strings.NewReader("twice"), nil)
	if a.code != 201 || a.body != "twice" || a.header.Get("X-First") != "yes" || a.header.Get("X-Second") != "" {
		t.Errorf("two HEADs: %d %q %v, want the first one's 201 and X-First only", a.code, a.body, a.header)
	}
	a = invoke(t, srv, "head", strings.NewReader("badjson"), nil)
	if a.code != 200 || a.body != "badjson" || a.header.Get(names.HeaderStatus) != "" {
		t.Errorf("a HEAD that is not JSON: %d %q %v, want 200 and no Butter-Status", a.code, a.body, a.header)
	}
}
