package scheduler_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	butterapi "github.com/butterfn/butter/api"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/nomadfake"
	"github.com/butterfn/butter/scheduler/schedtest"
	nomadapi "github.com/hashicorp/nomad/api"
)

// TestACLFollowerForwardsUnreplicatedToken: a follower that has not
// replicated a token yet (its Raft traffic is cut, while it still knows
// its leader) forwards the request to the leader, which accepts the
// token; a forged token sent to it is refused. TestACLFollowerForwards
// covers the ordinary case, where the token may have arrived already.
func TestACLFollowerForwardsUnreplicatedToken(t *testing.T) {
	// Long timeouts: the partitioned follower keeps believing in its
	// leader for the seconds the test needs.
	timing := scheduler.RaftTiming{HeartbeatTimeout: 3 * time.Second, ElectionTimeout: 3 * time.Second, LeaderLeaseTimeout: 2 * time.Second, CommitTimeout: 5 * time.Millisecond}
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 3, ACL: true, NoTimers: true, Timing: &timing})
	leader := c.Leader()
	mgmt, _ := schedtest.Bootstrap(t, leader.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mgmt.Projects().Put(ctx, "iot"); err != nil {
		t.Fatal(err)
	}
	f := c.Followers(leader)[0]
	c.Partition(f)
	_, tok := schedtest.Token(t, mgmt, leader.URL(), "iot", `project "iot" { capabilities = ["read"] }`)
	var known bool
	f.FSM().Read(func(st *fsm.State) { _, known = st.ACLTokens[tok.AccessorID] })
	if known {
		t.Fatal("the partitioned follower has the new token: the test cannot show forwarding")
	}
	viaFollower := schedtest.Client(t, f.URL(), tok.SecretID)
	if _, _, err := viaFollower.Projects().Status(ctx, "iot", &butterapi.QueryOptions{AllowStale: true}); err != nil {
		t.Fatalf("a token the follower has not replicated, sent to it: %v", err)
	}
	forged := schedtest.Client(t, f.URL(), "0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8")
	if _, _, err := forged.Projects().Status(ctx, "iot", &butterapi.QueryOptions{AllowStale: true}); butterapi.StatusCode(err) != 403 || !strings.Contains(err.Error(), "ACL token not found") {
		t.Fatalf("a forged token via the follower: %v, want 403 ACL token not found", err)
	}
}

// TestACLSignedBlobURLs: with ACLs on, the deployer registers jobs whose
// blob artifacts carry the leader's signature; the signed URL serves the
// blob without a token, while no signature, a tampered one or another
// blob's signature gets 403; and the revision is registered once over
// many deployer passes (the signature does not look like drift).
func TestACLSignedBlobURLs(t *testing.T) {
	nomad := nomadfake.New(func(*nomadapi.Job) nomadfake.Plan { return nomadfake.Plan{} })
	e := newACLEnvWith(t, scheduler.Config{ACL: true, Nomad: nomad})
	blob := []byte("bundle bytes")
	blobHex := digestOf(blob)
	e.must("PUT", "/v1/blobs/sha256/"+blobHex, blob)
	// A compiled job, its bundle's digest replaced by this blob's and its
	// blob URL by this server's.
	compiled, bundles := schedtest.RevisionJob(t, "p1", "r1", nil)
	old := strings.TrimPrefix(bundles["f"], "sha256:")
	job := json.RawMessage(strings.ReplaceAll(strings.ReplaceAll(string(compiled), old, blobHex), "http://127.0.0.1:4750", e.base))
	bundles = map[string]string{"f": "sha256:" + blobHex}
	e.must("POST", "/v1/projects/p1/revisions", jsonBody(butterapi.RevisionCreateRequest{ID: "r1", Job: job, Bundles: bundles}))
	var src string
	schedtest.WaitFor(t, 10*time.Second, "the job's registration", func() bool {
		j, err := nomad.Job(context.Background(), "butter-p1")
		if err != nil {
			return false
		}
		src = *j.TaskGroups[0].Tasks[0].Artifacts[0].GetterSource
		return true
	})
	if !strings.Contains(src, "butter_sig=") {
		t.Fatalf("the registered artifact URL %s is not signed", src)
	}
	path := strings.TrimPrefix(src, e.base)
	if code, b := e.do("GET", path, nil, ""); code != 200 || b != string(blob) {
		t.Errorf("GET the signed URL without a token: %d %q, want 200 and the blob", code, b)
	}
	_, sig, _ := strings.Cut(path, "butter_sig=")
	flipped := []byte(sig)
	flipped[0] ^= 1
	for what, p := range map[string]string{
		"unsigned":     "/v1/blobs/sha256/" + blobHex,
		"tampered":     "/v1/blobs/sha256/" + blobHex + "?butter_sig=" + string(flipped),
		"transplanted": "/v1/blobs/sha256/" + digestOf([]byte("other")) + "?butter_sig=" + sig,
		"not hex":      "/v1/blobs/sha256/" + blobHex + "?butter_sig=zz",
	} {
		if code, b := e.do("GET", p, nil, ""); code != 403 {
			t.Errorf("GET a blob %s: %d %s, want 403", what, code, b)
		}
	}
	n := nomad.Calls("Job")
	schedtest.WaitFor(t, 10*time.Second, "three more deployer passes", func() bool { return nomad.Calls("Job") > n+3 })
	if regs := nomad.Registrations(); len(regs) != 1 {
		t.Errorf("%d registrations of one revision, want 1", len(regs))
	}
}

// TestACLBadRequests: bad ACL requests get a specific error and change
// nothing (the Raft index does not move).
func TestACLBadRequests(t *testing.T) {
	e := newACLEnv(t)
	for _, c := range []struct {
		name, method, path, body, want string
		code                           int
	}{
		{"unknown capability with position", "PUT", "/v1/acl/policies/bad", `{"rules":"project \"x\" {\n capabilities = [\"write\"]\n}"}`, `policy bad:2:18: project \"x\": unknown capability \"write\": valid ones are \"deploy\", \"read\", \"keys\"`, 400},
		{"unknown block", "PUT", "/v1/acl/policies/bad", `{"rules":"namespace \"x\" {}"}`, `unknown block \"namespace\"`, 400},
		{"bad policy name", "PUT", "/v1/acl/policies/Bad%20Name", `{"rules":""}`, "policy name", 400},
		{"policy body not JSON", "PUT", "/v1/acl/policies/x", `rules`, "policy body", 400},
		{"management token with policies", "POST", "/v1/acl/tokens", `{"type":"management","policies":["p1"]}`, "a management token takes no policies", 400},
		{"delete unknown token", "DELETE", "/v1/acl/tokens/0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8", "", "no ACL token with accessor", 404},
		{"delete malformed accessor", "DELETE", "/v1/acl/tokens/xyz", "", "token accessor ID", 400},
		{"delete unknown policy", "DELETE", "/v1/acl/policies/nope", "", `no ACL policy \"nope\"`, 404},
		{"get unknown policy", "GET", "/v1/acl/policies/nope", "", `no ACL policy \"nope\"`, 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.s.FSM().Index()
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			code, b := e.do(c.method, c.path, body, e.secret["mgmt"])
			if code != c.code || !strings.Contains(b, c.want) {
				t.Errorf("%d %s, want %d with %s", code, b, c.code, c.want)
			}
			if after := e.s.FSM().Index(); after != before {
				t.Errorf("the refusal moved the Raft index from %d to %d", before, after)
			}
		})
	}
}

// TestACLStateHoldsNoSecret: the Raft state (what a snapshot saves) holds
// tokens' hashes, never their secrets; policy deletion takes effect at
// once for the tokens that named it.
func TestACLStateHoldsNoSecret(t *testing.T) {
	e := newACLEnv(t)
	e.s.FSM().Read(func(st *fsm.State) {
		b, _ := json.Marshal(st)
		for name, secret := range e.secret {
			if strings.Contains(string(b), secret) {
				t.Errorf("the Raft state holds token %s's secret", name)
			}
		}
	})
	e.must("PUT", "/v1/projects/p1", nil)
	if code, b := e.do("GET", "/v1/projects/p1", nil, e.secret["p1"]); code != 200 {
		t.Fatalf("p1's token before its policy's deletion: %d %s", code, b)
	}
	e.must("DELETE", "/v1/acl/policies/p1", nil)
	if code, b := e.do("GET", "/v1/projects/p1", nil, e.secret["p1"]); code != 403 || !strings.Contains(b, `lacks the capability \"read\" on project \"p1\"`) {
		t.Fatalf("p1's token after its policy's deletion: %d %s, want 403 naming read on p1", code, b)
	}
}

// TestACLBlobFromPeer: with ACLs on, a server that lacks a blob fetches
// it from a peer with the token of the request it serves, or with the
// signature of a signed request (HMAC-SHA256 of "sha256:<hex>" under the
// Raft state's blob key).
func TestACLBlobFromPeer(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{Nodes: 3, ACL: true, NoTimers: true})
	leader := c.Leader()
	mgmt, _ := schedtest.Bootstrap(t, leader.URL())
	_, tok := schedtest.Token(t, mgmt, leader.URL(), "p1", `project "p1" { capabilities = ["deploy", "read"] }`)
	fs := c.Followers(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blob, blob2 := []byte("peer blob"), []byte("signed peer blob")
	var putSig string // what storing blob2 answered (a leader's, or a follower's with a key, signs)
	for _, b := range [][]byte{blob, blob2} {
		resp, err := schedtest.Client(t, fs[0].URL(), tok.SecretID).Blobs().Put(ctx, "sha256:"+digestOf(b), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		putSig = resp.Signature
	}
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if token != "" {
			req.Header.Set(butterapi.HeaderToken, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := get(fs[1].URL()+"/v1/blobs/sha256/"+digestOf(blob), tok.SecretID); code != 200 || b != string(blob) {
		t.Fatalf("a blob only a peer has, with a token: %d %q", code, b)
	}
	// The key: the one a leader made when it stored a blob (a request
	// a follower forwarded), or one set here.
	var have string
	leader.Server.FSM().Read(func(st *fsm.State) { have = st.BlobKey })
	if have == "" {
		if err := leader.Server.Apply(fsm.BlobKeySetType, fsm.BlobKey{Key: "00112233445566778899aabbccddeeff"}); err != nil {
			t.Fatal(err)
		}
		leader.Server.FSM().Read(func(st *fsm.State) { have = st.BlobKey })
	}
	schedtest.WaitFor(t, 10*time.Second, "the blob key on every node", func() bool {
		for _, n := range c.Nodes {
			var k string
			n.FSM().Read(func(st *fsm.State) { k = st.BlobKey })
			if k == "" {
				return false
			}
		}
		return true
	})
	key, _ := hex.DecodeString(have)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sha256:" + digestOf(blob2)))
	sig := hex.EncodeToString(m.Sum(nil))
	if putSig != "" && putSig != sig {
		t.Errorf("storing the blob answered signature %s, want %s", putSig, sig)
	}
	signed := leader.URL() + "/v1/blobs/sha256/" + digestOf(blob2) + "?butter_sig=" + sig
	if code, b := get(signed, ""); code != 200 || b != string(blob2) {
		t.Fatalf("a signed blob only a peer has, without a token: %d %q", code, b)
	}
}

// TestACLClient drives every method of api.ACL against a real ACL node.
func TestACLClient(t *testing.T) {
	s, _ := schedtest.SingleConfig(t, scheduler.Config{ACL: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon := schedtest.Client(t, s.Addr(), "")
	root, err := anon.ACL().Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.SecretID == "" || root.Type != butterapi.ACLManagementToken {
		t.Fatalf("bootstrap answered %+v", root)
	}
	mgmt := schedtest.Client(t, s.Addr(), root.SecretID)
	rules := `project "iot" { capabilities = ["read"] }`
	p, err := mgmt.ACL().PolicyApply(ctx, "iot-read", "reads iot", rules)
	if err != nil || p.Name != "iot-read" || p.Rules != rules || p.Description != "reads iot" || p.Created.IsZero() {
		t.Fatalf("PolicyApply: %+v %v", p, err)
	}
	if got, err := mgmt.ACL().PolicyGet(ctx, "iot-read"); err != nil || got.Rules != rules {
		t.Fatalf("PolicyGet: %+v %v", got, err)
	}
	if list, err := mgmt.ACL().PolicyList(ctx); err != nil || len(list) != 1 || list[0].Name != "iot-read" {
		t.Fatalf("PolicyList: %+v %v", list, err)
	}
	tok, err := mgmt.ACL().TokenCreate(ctx, &butterapi.ACLTokenCreateRequest{Name: "reader", Policies: []string{"iot-read"}, TTL: "24h"})
	if err != nil || tok.SecretID == "" || tok.AccessorID == "" || tok.Expires.Sub(tok.Created) != 24*time.Hour {
		t.Fatalf("TokenCreate: %+v %v", tok, err)
	}
	reader := schedtest.Client(t, s.Addr(), tok.SecretID)
	if self, err := reader.ACL().TokenSelf(ctx); err != nil || self.AccessorID != tok.AccessorID || self.SecretID != "" {
		t.Fatalf("TokenSelf: %+v %v (no secret expected)", self, err)
	}
	if _, err := reader.ACL().TokenList(ctx); butterapi.StatusCode(err) != 403 {
		t.Fatalf("TokenList with a client token: %v, want 403", err)
	}
	list, err := mgmt.ACL().TokenList(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("TokenList: %+v %v", list, err)
	}
	for _, l := range list {
		if l.SecretID != "" {
			t.Errorf("TokenList shows a secret: %+v", l)
		}
	}
	if err := mgmt.ACL().TokenDelete(ctx, tok.AccessorID); err != nil {
		t.Fatal(err)
	}
	if err := mgmt.ACL().PolicyDelete(ctx, "iot-read"); err != nil {
		t.Fatal(err)
	}
	if _, err := mgmt.ACL().PolicyGet(ctx, "iot-read"); butterapi.StatusCode(err) != 404 {
		t.Fatalf("PolicyGet after delete: %v, want 404", err)
	}
	if _, err := reader.ACL().TokenSelf(ctx); butterapi.StatusCode(err) != 403 {
		t.Fatalf("TokenSelf of a deleted token: %v, want 403", err)
	}
}
