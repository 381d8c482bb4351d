package scheduler_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/butterfn/butter/telemetry/spanstore"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// publicRoutes is the documented set of routes that need no token
// (scheduler/acl.go, docs/security.md).
var publicRoutes = []string{
	"GET /metrics",
	"GET /ui/",
	"GET /{$}",
	"GET /v1/agent/self",
	"GET /v1/status/leader",
	"POST /v1/acl/bootstrap",
}

// aclEnv is a single ACL-enforcing node with tokens of every kind.
type aclEnv struct {
	t      *testing.T
	s      *scheduler.Server
	base   string
	mgmt   *api.Client
	secret map[string]string // "mgmt", "p1" (project p1, all), "p2" (project p2, all), "op" (operator only)
}

func newACLEnv(t *testing.T) *aclEnv { return newACLEnvWith(t, scheduler.Config{ACL: true}) }

// newACLEnvWith is newACLEnv on a node of cfg (which must have ACL on).
func newACLEnvWith(t *testing.T, cfg scheduler.Config) *aclEnv {
	s, _ := schedtest.SingleConfig(t, cfg)
	addr := s.Addr()
	mgmt, root := schedtest.Bootstrap(t, addr)
	e := &aclEnv{t: t, s: s, base: "http://" + addr, mgmt: mgmt, secret: map[string]string{"mgmt": root.SecretID}}
	_, tok := schedtest.Token(t, mgmt, addr, "p1", `project "p1" { capabilities = ["deploy", "read", "keys"] }`)
	e.secret["p1"] = tok.SecretID
	_, tok = schedtest.Token(t, mgmt, addr, "p2", `project "p2" { capabilities = ["deploy", "read", "keys"] }`)
	e.secret["p2"] = tok.SecretID
	_, tok = schedtest.Token(t, mgmt, addr, "op", `operator { capabilities = ["snapshot", "raft"] }`)
	e.secret["op"] = tok.SecretID
	return e
}

// do sends one request with the token secret (none when "") and answers
// the status and body.
func (e *aclEnv) do(method, path string, body []byte, secret string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set(api.HeaderToken, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// must sends a request with the management token and fails unless it
// answers 2xx.
func (e *aclEnv) must(method, path string, body []byte) string {
	e.t.Helper()
	code, out := e.do(method, path, body, e.secret["mgmt"])
	if code/100 != 2 {
		e.t.Fatalf("setup %s %s: %d %s", method, path, code, out)
	}
	return out
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// walkCase is how the walk exercises one route: prep sets up what the
// request needs (with the management token) and answers its path and
// body; right and wrong name the tokens that must be allowed and refused
// ("" for none: any token passes the rule).
type walkCase struct {
	prep         func(e *aclEnv) (path string, body []byte)
	right, wrong string
}

// TestACLWalkEveryRoute walks every route of the API's table (the one the
// mux is registered from, so a route without a rule cannot be served) on
// a real single-node control plane with ACLs on, and checks for each:
// anonymous → 403 (except the documented public routes), a token of the
// wrong project or kind → 403 naming what it lacks, the right token → 2xx,
// and that no refusal changed the Raft state.
func TestACLWalkEveryRoute(t *testing.T) {
	// An autoscaler over a Nomad with no groups, for the wake route; the
	// embedded broker for the dead letters and logs.
	kafka, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	spans := &spanstore.Store{}
	e := newACLEnvWith(t, scheduler.Config{ACL: true, Autoscale: &scheduler.AutoscaleConfig{Scaler: noGroups{}, Signals: noGroups{}}, KafkaConfig: kafka.Config(), Traces: spans})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	spans.Add(spanstore.Span{TraceID: traceID, SpanID: "00f067aa0ba902b7", Name: "POST /x", Attributes: map[string]string{"butter.project": "p1"}})
	// withStreams makes a revision of p1 with stream functions (f's dead
	// letters go to p1.in.dlq) the active one, with one dead letter of f.
	withStreams := func(e *aclEnv) api.ReplayRequest {
		files := map[string]string{"f/run": "cat\n"}
		for k, v := range dlProject {
			if k == "p.fn.hcl" {
				// In pool main, which the wake route wakes.
				files[k] = strings.ReplaceAll(strings.ReplaceAll(v, `project "dl"`, `project "p1"`), "runtime", "pool = \"main\"\n  runtime") +
					"pool \"main\" {\n  scaling {\n    min = 0\n  }\n}\n"
			}
		}
		job, bundles := schedtest.RevisionJobOf(e.t, "r9", files, nil)
		if err := e.s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "p1", ID: "r9", Job: job, Bundles: bundles, Created: time.Now()}); err != nil {
			e.t.Fatal(err)
		}
		if err := e.s.Apply(fsm.RevisionActivateType, fsm.Activation{Project: "p1", Revision: "r9"}); err != nil {
			e.t.Fatal(err)
		}
		kcl, err := kgo.NewClient(kgo.SeedBrokers(kafka.Addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			e.t.Fatal(err)
		}
		defer kcl.Close()
		_, _ = kadm.NewClient(kcl).CreateTopic(context.Background(), 1, 1, nil, "p1.in")
		_, _ = kadm.NewClient(kcl).CreateTopic(context.Background(), 1, 1, nil, "p1.in.dlq")
		dl := deadLetter("p1.in.dlq", "f", "p1.in/0/0", "w1", "x")
		if err := kcl.ProduceSync(context.Background(), dl).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
		return api.ReplayRequest{Topic: dl.Topic, Partition: dl.Partition, Offset: dl.Offset}
	}
	blob := []byte("a bundle")
	sum := sha256.Sum256(blob)
	blobHex := hex.EncodeToString(sum[:])
	rev := api.RevisionCreateRequest{ID: "r1", Specs: map[string]string{"p1.fn.hcl": "project \"p1\" {}\n"}}
	rev2 := api.RevisionCreateRequest{ID: "r2", Specs: map[string]string{"p1.fn.hcl": "project \"p1\" { }\n"}}
	e.must("POST", "/v1/projects/p1/revisions", jsonBody(rev))
	e.must("POST", "/v1/projects/p2/revisions", jsonBody(api.RevisionCreateRequest{ID: "r1", Specs: map[string]string{"p2.fn.hcl": "project \"p2\" {}\n"}}))
	e.must("PUT", "/v1/blobs/sha256/"+blobHex, blob)
	newKey := func(e *aclEnv) string {
		var k api.KeyCreateResponse
		if err := json.Unmarshal([]byte(e.must("POST", "/v1/projects/p1/keys", nil)), &k); err != nil {
			e.t.Fatal(err)
		}
		return k.Hash
	}
	// canaryOn starts a canary of project p1 (written to Raft as the
	// deploy would, for there is no deployer here) and returns the path
	// of one of its routes.
	canaries := 0
	canaryOn := func(path string, body []byte) func(*aclEnv) (string, []byte) {
		return func(e *aclEnv) (string, []byte) {
			canaries++
			stable, next := fmt.Sprintf("cs%d", canaries), fmt.Sprintf("cn%d", canaries)
			for _, id := range []string{stable, next} {
				if err := e.s.Apply(fsm.RevisionCreateType, fsm.Revision{Project: "p1", ID: id, Created: time.Now()}); err != nil {
					e.t.Fatal(err)
				}
			}
			if err := e.s.Apply(fsm.CanaryPutType, fsm.CanaryPut{Project: "p1", Activate: true, Canary: fsm.Canary{
				Revision: next, Stable: stable, Weight: 10, Phase: fsm.CanaryRunning, Started: time.Now(),
			}}); err != nil {
				e.t.Fatal(err)
			}
			return path, body
		}
	}
	fixed := func(p string, body []byte) func(*aclEnv) (string, []byte) {
		return func(*aclEnv) (string, []byte) { return p, body }
	}
	cases := map[string]walkCase{
		"GET /v1/agent/self":                  {prep: fixed("/v1/agent/self", nil)},
		"GET /v1/status/leader":               {prep: fixed("/v1/status/leader", nil)},
		"GET /metrics":                        {prep: fixed("/metrics", nil)},
		"GET /ui/":                            {prep: fixed("/ui/", nil)},
		"GET /{$}":                            {prep: fixed("/", nil)},
		"GET /v1/operator/raft/peers":         {prep: fixed("/v1/operator/raft/peers", nil), right: "op", wrong: "p1"},
		"DELETE /v1/operator/raft/peers/{id}": {prep: fixed("/v1/operator/raft/peers/127.0.0.1:1", nil), right: "op", wrong: "p1"},
		"GET /v1/operator/snapshot":           {prep: fixed("/v1/operator/snapshot", nil), right: "op", wrong: "p1"},
		"PUT /v1/operator/snapshot": {prep: func(e *aclEnv) (string, []byte) {
			return "/v1/operator/snapshot", []byte(e.must("GET", "/v1/operator/snapshot", nil))
		}, right: "op", wrong: "p1"},
		"GET /v1/blobs/sha256/{hex}": {prep: fixed("/v1/blobs/sha256/"+blobHex, nil), right: "p1", wrong: "op"},
		"PUT /v1/blobs/sha256/{hex}": {prep: fixed("/v1/blobs/sha256/"+blobHex, blob), right: "p1", wrong: "op"},
		"PUT /v1/timers/{id}":        {prep: fixed("/v1/timers/nightly", jsonBody(api.Timer{Schedule: "@every 1h", Topic: "x.y"})), right: "mgmt", wrong: "p1"},
		"GET /v1/timers/{id}": {prep: func(e *aclEnv) (string, []byte) {
			e.must("PUT", "/v1/timers/hourly", jsonBody(api.Timer{Schedule: "@every 1h", Topic: "x.y"}))
			return "/v1/timers/hourly", nil
		}, right: "mgmt", wrong: "p1"},
		"DELETE /v1/timers/{id}": {prep: func(e *aclEnv) (string, []byte) {
			e.must("PUT", "/v1/timers/daily", jsonBody(api.Timer{Schedule: "@every 24h", Topic: "x.y"}))
			return "/v1/timers/daily", nil
		}, right: "mgmt", wrong: "p1"},
		"PUT /v1/projects/{name}": {prep: fixed("/v1/projects/p1", nil), right: "p1", wrong: "p2"},
		"GET /v1/projects":        {prep: fixed("/v1/projects", nil), right: "p1", wrong: "op"},
		"GET /v1/projects/{name}": {prep: fixed("/v1/projects/p1", nil), right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/pools/{pool}/wake": {prep: func(e *aclEnv) (string, []byte) {
			// The leader's autoscaler starts after a Raft barrier.
			path, body := "/v1/projects/p1/pools/main/wake", jsonBody(api.WakeRequest{Held: 1})
			for deadline := time.Now().Add(10 * time.Second); ; {
				code, out := e.do("POST", path, body, e.secret["p1"])
				if code != 503 {
					break
				}
				if time.Now().After(deadline) {
					e.t.Fatalf("wake: %d %s after 10s; want the autoscaler running", code, out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return path, body
		}, right: "p1", wrong: "p2"},
		"DELETE /v1/projects/{name}": {prep: func(e *aclEnv) (string, []byte) {
			e.must("PUT", "/v1/projects/doomed", nil)
			return "/v1/projects/doomed", nil
		}, right: "mgmt", wrong: "p1"},
		"POST /v1/projects/{name}/revisions":      {prep: fixed("/v1/projects/p1/revisions", jsonBody(rev2)), right: "p1", wrong: "p2"},
		"GET /v1/projects/{name}/revisions":       {prep: fixed("/v1/projects/p1/revisions", nil), right: "p1", wrong: "p2"},
		"GET /v1/projects/{name}/revisions/{id}":  {prep: fixed("/v1/projects/p1/revisions/r1", nil), right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/rollback":       {prep: fixed("/v1/projects/p1/rollback", nil), right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/canary/promote": {prep: canaryOn("/v1/projects/p1/canary/promote", jsonBody(api.CanaryPromoteRequest{Weight: 50})), right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/canary/abort":   {prep: canaryOn("/v1/projects/p1/canary/abort", nil), right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/canary/report":  {prep: fixed("/v1/projects/p1/canary/report", jsonBody(api.CanaryReport{Gateway: "g", Revision: "r9"})), right: "p1", wrong: "p2"},
		"PUT /v1/projects/{name}/quota":           {prep: fixed("/v1/projects/p1/quota", jsonBody(api.Quota{MaxFunctions: 5})), right: "mgmt", wrong: "p1"},
		"POST /v1/projects/{name}/keys":           {prep: fixed("/v1/projects/p1/keys", nil), right: "p1", wrong: "p2"},
		"GET /v1/keys":                            {prep: fixed("/v1/keys", nil), right: "p1", wrong: "op"},
		"GET /v1/projects/{name}/functions":       {prep: fixed("/v1/projects/p1/functions", nil), right: "p1", wrong: "p2"},
		"GET /v1/projects/{name}/logs":            {prep: fixed("/v1/projects/p1/logs", nil), right: "p1", wrong: "p2"},
		"GET /v1/projects/{name}/traces":          {prep: fixed("/v1/projects/p1/traces", nil), right: "p1", wrong: "p2"},
		"GET /v1/projects/{name}/traces/{trace}":  {prep: fixed("/v1/projects/p1/traces/"+traceID, nil), right: "p1", wrong: "p2"},
		"POST /v1/traces":                         {prep: fixed("/v1/traces", nil), right: "p1", wrong: "op"},
		"GET /v1/projects/{name}/functions/{function}/deadletters": {prep: func(e *aclEnv) (string, []byte) {
			withStreams(e)
			return "/v1/projects/p1/functions/f/deadletters", nil
		}, right: "p1", wrong: "p2"},
		"POST /v1/projects/{name}/functions/{function}/deadletters/replay": {prep: func(e *aclEnv) (string, []byte) {
			return "/v1/projects/p1/functions/f/deadletters/replay", jsonBody(withStreams(e))
		}, right: "p1", wrong: "p2"},
		"DELETE /v1/keys/{hash}":      {prep: func(e *aclEnv) (string, []byte) { return "/v1/keys/" + newKey(e), nil }, right: "p1", wrong: "p2"},
		"POST /v1/acl/bootstrap":      {prep: fixed("/v1/acl/bootstrap", nil)},
		"GET /v1/acl/token/self":      {prep: fixed("/v1/acl/token/self", nil), right: "p1"},
		"GET /v1/acl/tokens":          {prep: fixed("/v1/acl/tokens", nil), right: "mgmt", wrong: "p1"},
		"POST /v1/acl/tokens":         {prep: fixed("/v1/acl/tokens", jsonBody(api.ACLTokenCreateRequest{Name: "x", Policies: []string{"p1"}})), right: "mgmt", wrong: "p1"},
		"GET /v1/acl/policies":        {prep: fixed("/v1/acl/policies", nil), right: "mgmt", wrong: "p1"},
		"GET /v1/acl/policies/{name}": {prep: fixed("/v1/acl/policies/p1", nil), right: "mgmt", wrong: "p1"},
		"PUT /v1/acl/policies/{name}": {prep: fixed("/v1/acl/policies/scratch", jsonBody(api.ACLPolicyApplyRequest{Rules: `project "s" { capabilities = ["read"] }`})), right: "mgmt", wrong: "p1"},
		"DELETE /v1/acl/policies/{name}": {prep: func(e *aclEnv) (string, []byte) {
			e.must("PUT", "/v1/acl/policies/gone", jsonBody(api.ACLPolicyApplyRequest{Rules: `operator { capabilities = ["raft"] }`}))
			return "/v1/acl/policies/gone", nil
		}, right: "mgmt", wrong: "p1"},
		"DELETE /v1/acl/tokens/{accessor}": {prep: func(e *aclEnv) (string, []byte) {
			var tok api.ACLToken
			_ = json.Unmarshal([]byte(e.must("POST", "/v1/acl/tokens", jsonBody(api.ACLTokenCreateRequest{Name: "gone", Policies: []string{"p2"}}))), &tok)
			return "/v1/acl/tokens/" + tok.AccessorID, nil
		}, right: "mgmt", wrong: "p1"},
	}
	var public []string
	for _, rt := range scheduler.Routes() {
		if rt.Rule.Access == scheduler.AccessPublic {
			public = append(public, rt.Pattern)
		}
	}
	slices.Sort(public)
	want := slices.Clone(publicRoutes)
	slices.Sort(want)
	if !slices.Equal(public, want) {
		t.Fatalf("public routes are %q; the documented set is %q", public, want)
	}
	routes := scheduler.Routes()
	// The peer removal goes last: it appends a Raft configuration entry,
	// and a snapshot cannot be taken until that is applied.
	slices.SortStableFunc(routes, func(a, b scheduler.RouteRule) int {
		last := func(r scheduler.RouteRule) bool { return r.Pattern == "DELETE /v1/operator/raft/peers/{id}" }
		switch {
		case last(a) && !last(b):
			return 1
		case last(b) && !last(a):
			return -1
		}
		return 0
	})
	if len(routes) != len(cases) {
		t.Errorf("the table has %d routes, the walk knows %d", len(routes), len(cases))
	}
	for _, rt := range routes {
		c, ok := cases[rt.Pattern]
		if !ok {
			t.Errorf("route %q (rule %s) has no walk case: add one to TestACLWalkEveryRoute", rt.Pattern, rt.Rule)
			continue
		}
		method, _, _ := strings.Cut(rt.Pattern, " ")
		path, body := c.prep(e)
		idx := e.s.FSM().Index()
		if rt.Rule.Access != scheduler.AccessPublic {
			if code, out := e.do(method, path, body, ""); code != 403 || !strings.Contains(out, "ACL token required") {
				t.Errorf("%s anonymous: %d %s; want 403 ACL token required", rt.Pattern, code, out)
			}
			if c.wrong != "" {
				if code, out := e.do(method, path, body, e.secret[c.wrong]); code != 403 || !strings.Contains(out, "permission denied") {
					t.Errorf("%s with token %s: %d %s; want 403 permission denied", rt.Pattern, c.wrong, code, out)
				}
			}
			if got := e.s.FSM().Index(); got != idx {
				t.Errorf("%s: a refused request changed the Raft state (index %d → %d)", rt.Pattern, idx, got)
			}
		}
		secret := ""
		if c.right != "" {
			secret = e.secret[c.right]
		}
		code, out := e.do(method, path, body, secret)
		if rt.Pattern == "POST /v1/acl/bootstrap" {
			// Public, but it works once: newACLEnv did it.
			if code != 400 || !strings.Contains(out, "ACL bootstrap already done") {
				t.Errorf("second bootstrap: %d %s; want 400 ACL bootstrap already done", code, out)
			}
			continue
		}
		if code/100 != 2 {
			t.Errorf("%s with token %q: %d %s; want 2xx", rt.Pattern, c.right, code, out)
		}
	}
}

// TestACLListsFiltered: the list routes answer only the projects the
// token may read.
func TestACLListsFiltered(t *testing.T) {
	e := newACLEnv(t)
	for _, p := range []string{"p1", "p2"} {
		e.must("POST", "/v1/projects/"+p+"/revisions", jsonBody(api.RevisionCreateRequest{ID: "r1", Specs: map[string]string{p + ".fn.hcl": "project \"" + p + "\" {}\n"}}))
		e.must("POST", "/v1/projects/"+p+"/keys", nil)
	}
	_, out := e.do("GET", "/v1/projects", nil, e.secret["p2"])
	var pl api.ProjectList
	if err := json.Unmarshal([]byte(out), &pl); err != nil || !slices.Equal(pl.Projects, []string{"p2"}) {
		t.Fatalf("projects with p2's token: %s (%v); want only p2", out, err)
	}
	_, out = e.do("GET", "/v1/keys", nil, e.secret["p1"])
	var keys []api.APIKey
	if err := json.Unmarshal([]byte(out), &keys); err != nil || len(keys) != 1 || keys[0].Project != "p1" {
		t.Fatalf("keys with p1's token: %s (%v); want p1's one key", out, err)
	}
	c := schedtest.Client(t, e.s.Addr(), e.secret["mgmt"])
	all, _, err := c.Projects().List(context.Background(), nil)
	if err != nil || len(all.Projects) != 2 {
		t.Fatalf("projects with the management token: %v %v; want both", all, err)
	}
}

// TestACLBadTokens: malformed, forged, expired and deleted tokens are
// refused with an error that names the cause, and Authorization: Bearer
// works as X-Butter-Token does.
func TestACLBadTokens(t *testing.T) {
	e := newACLEnv(t)
	ctx := context.Background()
	check := func(what, secret, want string) {
		t.Helper()
		code, out := e.do("GET", "/v1/acl/token/self", nil, secret)
		if code != 403 || !strings.Contains(out, want) {
			t.Fatalf("%s: %d %s; want 403 with %q", what, code, out, want)
		}
	}
	check("malformed", "hunter2", "malformed ACL token: a token's secret is a UUID")
	check("forged", "00000000-0000-4000-8000-000000000000", "ACL token not found")

	tok, err := e.mgmt.ACL().TokenCreate(ctx, &api.ACLTokenCreateRequest{Name: "short", Policies: []string{"p1"}, TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expires.IsZero() {
		t.Fatalf("token with ttl 1s has no expiry: %+v", tok)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out := e.do("GET", "/v1/acl/token/self", nil, tok.SecretID)
		if code == 403 {
			if !strings.Contains(out, "ACL token expired") {
				t.Fatalf("expired token: %s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token of ttl 1s is still accepted after 10s: %d %s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Bearer, then deletion takes effect at once.
	req, _ := http.NewRequest("GET", e.base+"/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+e.secret["p1"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("Authorization: Bearer: %d; want 200", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Basic abc")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("Authorization: Basic: %d; want 403", resp.StatusCode)
	}
	p1 := schedtest.Client(t, e.s.Addr(), e.secret["p1"])
	self, err := p1.ACL().TokenSelf(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mgmt.ACL().TokenDelete(ctx, self.AccessorID); err != nil {
		t.Fatal(err)
	}
	check("deleted", e.secret["p1"], "ACL token not found")

	// Bad token bodies change nothing.
	idx := e.s.FSM().Index()
	for _, req := range []api.ACLTokenCreateRequest{
		{Name: "x"},                             // client without policy
		{Name: "x", Policies: []string{"nope"}}, // unknown policy
		{Name: "x", Type: "root", Policies: []string{"p2"}},
		{Name: "x", Type: "management", Policies: []string{"p2"}},
		{Name: "x", Policies: []string{"p2"}, TTL: "-1h"},
	} {
		if _, err := e.mgmt.ACL().TokenCreate(ctx, &req); api.StatusCode(err) != 400 {
			t.Errorf("token create %+v: %v; want 400", req, err)
		}
	}
	if _, err := e.mgmt.ACL().PolicyApply(ctx, "bad", "", `project "x" { capabilities = ["deploy", "fly"] }`); api.StatusCode(err) != 400 || !strings.Contains(err.Error(), `"fly"`) || !strings.Contains(err.Error(), "policy bad:1:") {
		t.Errorf("policy with an unknown capability: %v; want 400 naming it and its position", err)
	}
	if got := e.s.FSM().Index(); got != idx {
		t.Errorf("refused token and policy writes changed the Raft state (index %d → %d)", idx, got)
	}
}

// TestACLBootstrapOnce: the second bootstrap is refused, and on a
// server with ACLs off there is nothing to bootstrap.
func TestACLBootstrapOnce(t *testing.T) {
	s, _ := schedtest.SingleConfig(t, scheduler.Config{ACL: true})
	schedtest.Bootstrap(t, s.Addr())
	anon := schedtest.Client(t, s.Addr(), "")
	if _, err := anon.ACL().Bootstrap(context.Background()); err == nil || !strings.Contains(err.Error(), "ACL bootstrap already done") {
		t.Fatalf("second bootstrap: %v; want ACL bootstrap already done", err)
	}
	_, off := schedtest.Single(t, nil)
	if _, err := off.ACL().Bootstrap(context.Background()); err == nil || !strings.Contains(err.Error(), "ACLs are off") {
		t.Fatalf("bootstrap with ACLs off: %v", err)
	}
}

// TestACLFollowerForwards: on a 3-node cluster, a token created on the
// leader is accepted at once on a follower (which forwards requests with
// a token it does not know yet, with the token), and refusals come back
// the same.
func TestACLFollowerForwards(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{ACL: true})
	leader := c.Leader()
	mgmt, _ := schedtest.Bootstrap(t, leader.ID)
	_, tok := schedtest.Token(t, mgmt, leader.ID, "p1", `project "p1" { capabilities = ["deploy", "read"] }`)
	for _, n := range c.Followers(leader) {
		f := schedtest.Client(t, n.ID, tok.SecretID)
		if _, err := f.Projects().Put(context.Background(), "p1"); err != nil {
			t.Fatalf("follower %s with a fresh token: %v", n.ID, err)
		}
		if _, err := f.Projects().Put(context.Background(), "p2"); api.StatusCode(err) != 403 || !strings.Contains(err.Error(), `"deploy" on project "p2"`) {
			t.Fatalf("follower %s, another project: %v; want 403 naming deploy on p2", n.ID, err)
		}
	}
}

// noGroups is a Nomad with no task groups, and signals never read.
type noGroups struct{}

func (noGroups) Groups(context.Context) ([]autoscaler.Group, error) { return nil, nil }
func (noGroups) Scale(context.Context, autoscaler.Target, int, string) error {
	return errors.New("no groups")
}
func (noGroups) Load(context.Context, autoscaler.Group) (autoscaler.Load, error) {
	return autoscaler.Load{}, errors.New("no groups")
}
