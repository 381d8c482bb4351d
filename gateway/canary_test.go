package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/gateway"
)

// TestCanarySplit runs two real pools, one per revision, behind the
// gateway and splits a route's calls between them as a canary: about the
// weight's share goes to the canary (checked with wide bounds: the draw
// is random), the Butter-Revision header pins a call, the answer names
// the revision that served it, and the gateway's reports count each
// cohort's calls and 5xx answers, pinned calls in neither.
func TestCanarySplit(t *testing.T) {
	const stableRev, canaryRev = "stable0123456789", "canary0123456789"
	who := func(name string) []string {
		// Fails (exit 1: a 5xx answer) on the body "fail".
		return []string{"sh", "-c", `read -r x; [ "$x" = fail ] && exit 1; echo ` + name}
	}
	stable := startPool(t, fn("who", who("stable")...))
	canary := startPool(t, fn("who", who("canary")...))
	res := gateway.NewStaticResolver()
	res.Set("test", "default", stable.addr, canary.addr)
	res.SetRevision("test", "default", stableRev, stable.addr)
	res.SetRevision("test", "default", canaryRev, canary.addr)
	g, url := startGateway(t, res, []gateway.Route{{Method: "POST", Path: "/who", Project: "test", Function: "who"}})

	// No canary: the header asking for one is refused; others are
	// ignored.
	if a := post(t, url+"/who", "x\n", map[string]string{api.HeaderRevision: "canary"}); a.code != http.StatusNotFound || a.err.Type != "NoCanary" {
		t.Fatalf("Butter-Revision: canary with no canary: %d %s", a.code, a.body)
	}
	if a := post(t, url+"/who", "x\n", nil); a.code != 200 || a.header.Get(api.HeaderRevision) != "" {
		t.Fatalf("a call with no canary: %d %q, revision header %q", a.code, a.body, a.header.Get(api.HeaderRevision))
	}

	g.SetSplits(map[string]gateway.Split{"test": {Stable: stableRev, Canary: canaryRev, Weight: 30}})
	const n = 300
	served := map[string]int{}
	for range n {
		a := post(t, url+"/who", "x\n", nil)
		body := strings.TrimSpace(a.body)
		served[body]++
		if want := map[string]string{"stable": stableRev, "canary": canaryRev}[body]; a.code != 200 || a.header.Get(api.HeaderRevision) != want {
			t.Fatalf("answer %d %q names revision %q, want %q", a.code, body, a.header.Get(api.HeaderRevision), want)
		}
	}
	// 30% of 300 is 90, with a standard deviation near 8: 45 to 135 is
	// more than five of them either way.
	if c := served["canary"]; c < 45 || c > 135 || served["stable"]+c != n {
		t.Fatalf("of %d calls at 30%%, %v: want about 90 on the canary", n, served)
	}
	// Pinned calls.
	for hdr, want := range map[string]string{"canary": "canary", "STABLE": "stable", canaryRev[:6]: "canary", stableRev: "stable"} {
		for range 10 {
			if a := post(t, url+"/who", "x\n", map[string]string{api.HeaderRevision: hdr}); strings.TrimSpace(a.body) != want {
				t.Fatalf("Butter-Revision: %s: answered %d %q, want %s", hdr, a.code, a.body, want)
			}
		}
	}
	if a := post(t, url+"/who", "x\n", map[string]string{api.HeaderRevision: "nope"}); a.code != http.StatusBadRequest || !strings.Contains(a.err.Error, canaryRev) {
		t.Fatalf("Butter-Revision: nope: %d %s, want 400 naming the revisions", a.code, a.body)
	}
	// Failing calls at another weight.
	g.SetSplits(map[string]gateway.Split{"test": {Stable: stableRev, Canary: canaryRev, Weight: 50}})
	failed := map[string]int{}
	for range 100 {
		a := post(t, url+"/who", "fail\n", nil)
		if a.code < 500 {
			t.Fatalf("a failing call answered %d", a.code)
		}
		failed[a.header.Get(api.HeaderRevision)]++
	}

	reps := g.CanaryReports()
	rep, ok := reps["test"]
	if !ok || rep.Revision != canaryRev || len(rep.Steps) != 2 {
		t.Fatalf("reports %+v, want project test's canary at two weights", reps)
	}
	at30, at50 := rep.Steps[0], rep.Steps[1]
	if at30.Weight != 30 || at30.Canary.Requests != uint64(served["canary"]) || at30.Canary.Errors != 0 {
		t.Errorf("at 30%%: canary counted %+v, want %d calls and no error", at30.Canary, served["canary"])
	}
	// The baseline is an equal share (30%) of the calls; the rest of the
	// stable revision's are counted nowhere.
	if b := at30.Baseline.Requests; b == 0 || b >= uint64(served["stable"]) {
		t.Errorf("at 30%%: baseline counted %d of the stable revision's %d calls, want a share", b, served["stable"])
	}
	var inBuckets uint64
	for _, c := range at30.Canary.Buckets {
		inBuckets += c
	}
	if inBuckets != at30.Canary.Requests {
		t.Errorf("the canary's latency buckets hold %d calls, want %d", inBuckets, at30.Canary.Requests)
	}
	// At 50% every call is in a cohort.
	if at50.Canary.Errors != uint64(failed[canaryRev]) || at50.Canary.Requests != at50.Canary.Errors ||
		at50.Baseline.Errors != uint64(failed[stableRev]) || at50.Canary.Requests+at50.Baseline.Requests != 100 {
		t.Errorf("at 50%%: counted canary %+v and baseline %+v, want every failing call (%v) in its cohort", at50.Canary, at50.Baseline, failed)
	}

	// An aborted canary drains: every call goes to the stable revision,
	// uncounted, though the canary's endpoints are still known.
	g.SetSplits(map[string]gateway.Split{"test": {Stable: stableRev, Canary: canaryRev, Weight: 50, Draining: true}})
	for range 40 {
		if a := post(t, url+"/who", "x\n", nil); a.code != 200 || strings.TrimSpace(a.body) != "stable" || a.header.Get(api.HeaderRevision) != stableRev {
			t.Fatalf("a call while the canary drains: %d %q (%s), want the stable revision", a.code, a.body, a.header.Get(api.HeaderRevision))
		}
	}
	if got := g.CanaryReports()["test"].Steps; len(got) != 2 || got[1].Canary.Requests+got[1].Baseline.Requests != 100 {
		t.Errorf("calls while draining were counted: %+v", got)
	}
	// A revision with no endpoint: a drawn call falls back to any
	// endpoint; a pinned one fails.
	g.SetSplits(map[string]gateway.Split{"test": {Stable: stableRev, Canary: "gone01234567", Weight: 100}})
	if a := post(t, url+"/who", "x\n", nil); a.code != 200 {
		t.Fatalf("a drawn call to a revision with no endpoint: %d %s, want an answer from any endpoint", a.code, a.body)
	}
	if a := post(t, url+"/who", "x\n", map[string]string{api.HeaderRevision: "canary"}); a.code != http.StatusServiceUnavailable {
		t.Fatalf("a pinned call to a revision with no endpoint: %d %s, want 503", a.code, a.body)
	}

	// The canary ends: its counts go, calls reach every endpoint again.
	g.SetSplits(nil)
	if reps := g.CanaryReports(); len(reps) != 0 {
		t.Errorf("reports after the canary ended: %+v", reps)
	}
	if a := post(t, url+"/who", "x\n", nil); a.code != 200 || a.header.Get(api.HeaderRevision) != "" {
		t.Fatalf("a call after the canary: %d %q, revision header %q", a.code, a.body, a.header.Get(api.HeaderRevision))
	}
}
