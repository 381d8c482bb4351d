package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/butterfn/butter/scheduler/schedtest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/scheduler"
)

// startServer runs a real single-node control plane and returns a client
// of it, once the node leads.
func startServer(t *testing.T) (*scheduler.Server, *api.Client) {
	t.Helper()
	s, _ := schedtest.Single(t, nil)
	c, err := api.NewClient(&api.Config{Address: "http://" + s.Addr(), Token: "ignored-for-now"})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func wantStatus(t *testing.T, what string, err error, code int, text string) {
	t.Helper()
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != code || !strings.Contains(se.Message, text) {
		t.Fatalf("%s: got error %v, want a %d StatusError containing %q", what, err, code, text)
	}
	if api.StatusCode(err) != code {
		t.Fatalf("%s: StatusCode = %d, want %d", what, api.StatusCode(err), code)
	}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestDefaultConfig(t *testing.T) {
	for _, k := range []string{api.EnvAddr, api.EnvToken, api.EnvCACert, api.EnvClientCert, api.EnvClientKey, api.EnvTLSServerName, api.EnvSkipVerify} {
		t.Setenv(k, "")
	}
	cfg := api.DefaultConfig()
	if cfg.Address != "http://127.0.0.1:4750" || cfg.Token != "" || cfg.TLS != (api.TLSConfig{}) {
		t.Fatalf("empty environment: %+v", cfg)
	}
	t.Setenv(api.EnvAddr, "https://cp.example:4750/")
	t.Setenv(api.EnvToken, "s3cret")
	t.Setenv(api.EnvCACert, "/ca.pem")
	t.Setenv(api.EnvClientCert, "/c.pem")
	t.Setenv(api.EnvClientKey, "/k.pem")
	t.Setenv(api.EnvTLSServerName, "cp.internal")
	t.Setenv(api.EnvSkipVerify, "true")
	cfg = api.DefaultConfig()
	want := api.Config{Address: "https://cp.example:4750/", Token: "s3cret",
		TLS: api.TLSConfig{CACert: "/ca.pem", ClientCert: "/c.pem", ClientKey: "/k.pem", ServerName: "cp.internal", Insecure: true}}
	if cfg.Address != want.Address || cfg.Token != want.Token || cfg.TLS != want.TLS {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
	t.Setenv(api.EnvSkipVerify, "nonsense")
	if api.DefaultConfig().TLS.Insecure {
		t.Fatal("an unparsable BUTTER_SKIP_VERIFY skips verification")
	}
}

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		cfg  api.Config
		addr string // "" when NewClient must fail
		err  string
	}{
		{cfg: api.Config{Address: "http://127.0.0.1:4750/"}, addr: "http://127.0.0.1:4750"},
		{cfg: api.Config{Address: "127.0.0.1:9000"}, addr: "http://127.0.0.1:9000"},
		{cfg: api.Config{}, addr: api.DefaultAddress},
		{cfg: api.Config{Address: "ftp://x:1"}, err: "want http://host:port"},
		{cfg: api.Config{Address: "https://x:1", TLS: api.TLSConfig{ClientCert: "/c.pem"}}, err: "both the certificate and the key"},
		{cfg: api.Config{Address: "https://x:1", TLS: api.TLSConfig{CACert: filepath.Join(t.TempDir(), "missing.pem")}}, err: "CA certificate"},
	} {
		c, err := api.NewClient(&tc.cfg)
		switch {
		case tc.addr != "" && (err != nil || c.Address() != tc.addr):
			t.Errorf("%+v: got %v, %v; want address %s", tc.cfg, c, err, tc.addr)
		case tc.addr == "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: got error %v, want one containing %q", tc.cfg, err, tc.err)
		}
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(&api.Config{Address: "https://x:1", TLS: api.TLSConfig{CACert: bad}}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}

// TestRequestEncoding checks what the client puts on the wire that the
// server does not answer back today: the token header and the query
// options. The server here is an httptest recorder, not the control plane:
// the real server ignores the token (the ACL work will check it) and
// answers a leader's read the same with or without ?stale.
func TestRequestEncoding(t *testing.T) {
	var got *http.Request
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set(api.HeaderIndex, "42")
		w.Header().Set(api.HeaderKnownLeader, "true")
		_ = json.NewEncoder(w).Encode(api.ProjectList{Projects: []string{"a"}})
	}))
	defer rec.Close()
	c, err := api.NewClient(&api.Config{Address: rec.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	list, meta, err := c.Projects().List(context.Background(), &api.QueryOptions{AllowStale: true, WaitIndex: 7, WaitTime: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q := got.URL.Query()
	if got.Header.Get(api.HeaderToken) != "tok" || !q.Has("stale") || q.Get("index") != "7" || q.Get("wait") != "1500ms" {
		t.Errorf("request %s with headers %v", got.URL, got.Header)
	}
	if len(list.Projects) != 1 || meta.LastIndex != 42 || !meta.KnownLeader {
		t.Errorf("answer %+v, meta %+v", list, meta)
	}
	if _, _, err := c.Projects().List(context.Background(), nil); err != nil || got.URL.RawQuery != "" {
		t.Errorf("no options: query %q, %v", got.URL.RawQuery, err)
	}
	noToken, _ := api.NewClient(&api.Config{Address: rec.URL})
	if _, _, err := noToken.Projects().List(context.Background(), nil); err != nil || got.Header.Get(api.HeaderToken) != "" {
		t.Errorf("a client without a token sent %q (%v)", got.Header.Get(api.HeaderToken), err)
	}
}

// TestClient drives every endpoint of a real single-node control plane
// through the client, including the error answers.
func TestClient(t *testing.T) {
	s, c := startServer(t)
	ctx := context.Background()

	self, err := c.Agent().Self(ctx)
	if err != nil || self.ID != s.Addr() || self.RaftAddr == "" {
		t.Fatalf("agent self: %+v, %v", self, err)
	}
	if leader, err := c.Status().Leader(ctx); err != nil || leader != s.Addr() {
		t.Fatalf("leader: %q, %v", leader, err)
	}
	peers, err := c.Operator().RaftPeers(ctx)
	if err != nil || len(peers) != 1 || peers[0].ID != s.Addr() || !peers[0].Leader || peers[0].Suffrage != "Voter" {
		t.Fatalf("peers: %+v, %v", peers, err)
	}

	// Projects.
	list, meta, err := c.Projects().List(ctx, nil)
	if err != nil || len(list.Projects) != 0 || list.Stale || !meta.KnownLeader {
		t.Fatalf("empty list: %+v %+v %v", list, meta, err)
	}
	_, _, err = c.Projects().Status(ctx, "nope", nil)
	wantStatus(t, "status of an unknown project", err, 404, `no project "nope"`)
	p, err := c.Projects().Put(ctx, "alpha")
	if err != nil || p.Name != "alpha" || p.Created.IsZero() {
		t.Fatalf("put: %+v, %v", p, err)
	}

	// Blobs.
	content := []byte(`{"type":"object"}`)
	put, err := c.Blobs().Put(ctx, digest(content), bytes.NewReader(content), int64(len(content)))
	if err != nil || put.Digest != digest(content) {
		t.Fatalf("blob put: %+v, %v", put, err)
	}
	rc, err := c.Blobs().Get(ctx, strings.TrimPrefix(digest(content), "sha256:"))
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(back, content) {
		t.Fatalf("blob get: %q", back)
	}
	_, err = c.Blobs().Put(ctx, digest([]byte("other")), bytes.NewReader(content), -1)
	wantStatus(t, "a blob that does not match its digest", err, 400, "content hashes to")
	_, err = c.Blobs().Get(ctx, digest([]byte("never stored")))
	wantStatus(t, "an unknown blob", err, 404, "no server has it")
	if _, err := c.Blobs().Get(ctx, "sha256:xyz"); err == nil || api.StatusCode(err) != 0 {
		t.Fatalf("a malformed digest reached the server or passed: %v", err)
	}
	if c.Blobs().URL() != "http://"+s.Addr()+"/v1/blobs" {
		t.Fatalf("blob URL %s", c.Blobs().URL())
	}

	// Revisions and rollback.
	indented, bundles := schedtest.RevisionJob(t, "hello", "r1", nil)
	var compact bytes.Buffer
	if err := json.Compact(&compact, indented); err != nil {
		t.Fatal(err)
	}
	job := json.RawMessage(compact.Bytes())
	bundles["schema.json"] = digest(content)
	first := &api.RevisionCreateRequest{
		ID: "r1", Specs: map[string]string{"hello.fn.hcl": "# spec"}, Bundles: bundles,
		GitSHA: "abc", Author: "ana", Routes: []string{"POST /echo -> echo"}, Job: job,
		Timers: []*api.Timer{{ID: "hello.nightly", Schedule: "0 3 * * *", Topic: "butter.hello._timer.nightly"}},
	}
	created, err := c.Revisions().Create(ctx, "hello", first)
	if err != nil || *created != (api.RevisionCreateResponse{Project: "hello", Revision: "r1", New: true}) {
		t.Fatalf("create r1: %+v, %v", created, err)
	}
	if again, err := c.Revisions().Create(ctx, "hello", first); err != nil || again.New {
		t.Fatalf("create r1 again: %+v, %v", again, err)
	}
	_, err = c.Revisions().Rollback(ctx, "hello")
	wantStatus(t, "rollback with nothing before", err, 409, "no revision before its active one")
	_, err = c.Revisions().Create(ctx, "hello", &api.RevisionCreateRequest{})
	wantStatus(t, "a revision without an id", err, 400, "needs an id")
	if _, err := c.Revisions().Create(ctx, "hello", &api.RevisionCreateRequest{ID: "r2", Specs: map[string]string{"hello.fn.hcl": "# two"}}); err != nil {
		t.Fatal(err)
	}
	revs, _, err := c.Revisions().List(ctx, "hello", nil)
	if err != nil || len(revs) != 2 || revs[0].ID != "r1" || revs[0].Active || !revs[1].Active || revs[1].ID != "r2" {
		t.Fatalf("list: %+v, %v", revs, err)
	}
	if revs[0].Specs != nil || revs[0].Job != nil || revs[0].Author != "ana" || revs[0].Deployment.Status == "" {
		t.Fatalf("a listed revision: %+v", revs[0])
	}
	rev, _, err := c.Revisions().Get(ctx, "hello", "r1", &api.QueryOptions{AllowStale: true})
	if err != nil || rev.Specs["hello.fn.hcl"] != "# spec" || string(rev.Job) != string(job) || rev.Project != "hello" || len(rev.Timers) != 1 {
		t.Fatalf("get r1: %+v, %v", rev, err)
	}
	_, _, err = c.Revisions().Get(ctx, "hello", "r9", nil)
	wantStatus(t, "an unknown revision", err, 404, `no revision "r9"`)
	back1, err := c.Revisions().Rollback(ctx, "hello")
	if err != nil || back1.Revision != "r1" || back1.Deployer {
		t.Fatalf("rollback: %+v, %v", back1, err)
	}
	st, _, err := c.Projects().Status(ctx, "hello", nil)
	if err != nil || st.Active == nil || st.Active.ID != "r1" || st.Revisions != 2 || st.Active.Specs != nil {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if len(st.Timers) != 1 || st.Timers[0].ID != "hello.nightly" || st.Timers[0].Project != "hello" || !st.Timers[0].LastFired.IsZero() {
		t.Fatalf("status timers: %+v", st.Timers)
	}
	if !strings.Contains(st.Active.Deployment.Message, "rolled back from r2") {
		t.Fatalf("status message: %+v", st.Active.Deployment)
	}
	list, _, err = c.Projects().List(ctx, &api.QueryOptions{AllowStale: true})
	if err != nil || strings.Join(list.Projects, ",") != "alpha,hello" {
		t.Fatalf("list: %+v, %v", list, err)
	}

	// Keys.
	_, err = c.Keys().Create(ctx, "nope", nil)
	wantStatus(t, "a key of an unknown project", err, 404, `no project "nope"`)
	key, err := c.Keys().Create(ctx, "hello", []string{"POST /echo"})
	if err != nil || !strings.HasPrefix(key.Key, "bk_") || key.Project != "hello" {
		t.Fatalf("create key: %+v, %v", key, err)
	}
	if sum := sha256.Sum256([]byte(key.Key)); hex.EncodeToString(sum[:]) != key.Hash {
		t.Fatalf("the key's hash is not its SHA-256")
	}
	keys, _, err := c.Keys().List(ctx, nil)
	if err != nil || len(keys) != 1 || keys[0].Hash != key.Hash || keys[0].Project != "hello" || strings.Join(keys[0].Routes, ",") != "POST /echo" {
		t.Fatalf("list keys: %+v, %v", keys, err)
	}
	if err := c.Keys().Revoke(ctx, key.Hash); err != nil {
		t.Fatal(err)
	}
	if keys, _, err := c.Keys().List(ctx, nil); err != nil || len(keys) != 0 {
		t.Fatalf("after revoking: %+v, %v", keys, err)
	}

	// Timers.
	_, err = c.Timers().Put(ctx, &api.Timer{ID: "bad", Schedule: "every now and then", Topic: "t"})
	wantStatus(t, "a bad schedule", err, 400, "schedule")
	_, err = c.Timers().Put(ctx, &api.Timer{ID: "notopic", Schedule: "* * * * *"})
	wantStatus(t, "a timer without a topic", err, 400, "a topic is required")
	tm, err := c.Timers().Put(ctx, &api.Timer{ID: "every-minute", Schedule: "* * * * *", Timezone: "Europe/Paris", Topic: "ticks"})
	if err != nil || *tm != (api.Timer{ID: "every-minute", Schedule: "* * * * *", Timezone: "Europe/Paris", Topic: "ticks"}) {
		t.Fatalf("put timer: %+v, %v", tm, err)
	}
	if got, err := c.Timers().Get(ctx, "every-minute"); err != nil || got.Timer != *tm || !got.LastFired.IsZero() {
		t.Fatalf("get timer: %+v, %v", got, err)
	}
	if err := c.Timers().Delete(ctx, "every-minute"); err != nil {
		t.Fatalf("delete timer: %v", err)
	}
	_, err = c.Timers().Get(ctx, "every-minute")
	wantStatus(t, "a deleted timer", err, 404, "no timer")
	wantStatus(t, "deleting a timer twice", c.Timers().Delete(ctx, "every-minute"), 404, "no timer")

	// Snapshots: save, change the state, restore, and the change is gone.
	snap, index, err := c.Operator().SnapshotSave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(snap)
	snap.Close()
	if err != nil || len(saved) == 0 || index == 0 {
		t.Fatalf("snapshot: %d bytes at index %d, %v", len(saved), index, err)
	}
	if _, err := c.Projects().Put(ctx, "later"); err != nil {
		t.Fatal(err)
	}
	if err := c.Operator().SnapshotRestore(ctx, bytes.NewReader(saved), int64(len(saved))); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Projects().Status(ctx, "later", nil)
	wantStatus(t, "a project created after the snapshot, once restored", err, 404, "no project")
	if st, _, err := c.Projects().Status(ctx, "hello", nil); err != nil || st.Active.ID != "r1" {
		t.Fatalf("after restore: %+v, %v", st, err)
	}
}

// TestRemovePeer: removing an ID that is not in the configuration leaves
// the configuration as it was.
func TestRemovePeer(t *testing.T) {
	s, c := startServer(t)
	ctx := context.Background()
	if err := c.Operator().RaftRemovePeer(ctx, "127.0.0.1:1"); err != nil {
		t.Fatalf("removing an unknown peer: %v", err)
	}
	if peers, err := c.Operator().RaftPeers(ctx); err != nil || len(peers) != 1 || peers[0].ID != s.Addr() {
		t.Fatalf("peers: %+v, %v", peers, err)
	}
}

// TestUnreachable: a server that does not answer is an error without a
// status code.
func TestUnreachable(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: testport.Addr(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status().Leader(context.Background())
	if err == nil || api.StatusCode(err) != 0 {
		t.Fatalf("got %v", err)
	}
}

// TestBlockingQuery: a read with WaitIndex waits for the next write and
// answers it; with no write, it answers the same state once WaitTime ran
// out; a malformed index is a 400.
func TestBlockingQuery(t *testing.T) {
	s, c := startServer(t)
	ctx := context.Background()
	if _, err := c.Projects().Put(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	_, meta, err := c.Projects().List(ctx, nil)
	if err != nil || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("list: %+v, %v", meta, err)
	}

	// No write: the answer comes after WaitTime, at the same index.
	start := time.Now()
	list, again, err := c.Projects().List(ctx, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 200 * time.Millisecond})
	if err != nil || again.LastIndex != meta.LastIndex || len(list.Projects) != 1 {
		t.Fatalf("timed-out wait: %+v %+v, %v", list, again, err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("the server answered after %s, before the wait ran out", waited)
	}

	// A write wakes the waiting reads: projects and keys. Their wait is
	// long, so an answer within the test's deadline comes from the write.
	type answer struct {
		what  string
		index uint64
		n     int
		err   error
	}
	answers := make(chan answer, 2)
	long := &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute}
	go func() {
		l, m, err := c.Projects().List(ctx, long)
		a := answer{what: "projects", err: err}
		if err == nil {
			a.index, a.n = m.LastIndex, len(l.Projects)
		}
		answers <- a
	}()
	go func() {
		k, m, err := c.Keys().List(ctx, long)
		a := answer{what: "keys", err: err}
		if err == nil {
			a.index, a.n = m.LastIndex, len(k)
		}
		answers <- a
	}()
	if _, err := c.Keys().Create(ctx, "first", nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case a := <-answers:
			if a.err != nil || a.index <= meta.LastIndex {
				t.Fatalf("%s: woke at index %d (waited on %d), %v", a.what, a.index, meta.LastIndex, a.err)
			}
			if a.what == "keys" && a.n != 1 {
				t.Fatalf("keys after the write: %d", a.n)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a blocking query did not wake on a write")
		}
	}

	// Revisions block too, and a malformed index or wait is refused.
	_, rm, err := c.Revisions().List(ctx, "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		revs, m, err := c.Revisions().List(ctx, "first", &api.QueryOptions{WaitIndex: rm.LastIndex, WaitTime: time.Minute})
		if err == nil && (len(revs) != 1 || m.LastIndex <= rm.LastIndex) {
			err = errors.New("woke without the new revision")
		}
		done <- err
	}()
	if _, err := c.Revisions().Create(ctx, "first", &api.RevisionCreateRequest{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the revisions' blocking query did not wake")
	}
	for _, q := range []string{"index=abc", "index=1&wait=forever"} {
		resp, err := http.Get("http://" + s.Addr() + "/v1/projects?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("?%s: %s", q, resp.Status)
		}
	}
}
