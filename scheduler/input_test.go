package scheduler_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
)

// inputServer runs a real single-node control plane with cfg's limits on
// real Raft stores and TCP (schedtest.SingleConfig), and returns it, a
// client of its API and its data dir.
func inputServer(t testing.TB, cfg scheduler.Config) (*scheduler.Server, *api.Client, string) {
	t.Helper()
	cfg.DataDir = t.TempDir()
	s, c := schedtest.SingleConfig(t, cfg)
	return s, c, cfg.DataDir
}

// unchanged fails the test when the server's state moved past index last
// (a command was applied; a leader's read barrier appends to the Raft log
// but changes no state) or a blob file (or a partial one) exists.
func unchanged(t testing.TB, s *scheduler.Server, dataDir string, last uint64, what string) {
	t.Helper()
	if got := s.FSM().Index(); got != last {
		t.Errorf("%s: the state moved from index %d to %d: something was written", what, last, got)
	}
	if files := blobFiles(t, dataDir); len(files) > 0 {
		t.Errorf("%s: blob files were kept: %v", what, files)
	}
}

// blobFiles lists every file in the data dir's blob directory, temporary
// ones included.
func blobFiles(t testing.TB, dataDir string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(dataDir, "blobs")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// do sends one request with a raw (already escaped) path and returns the
// status and the api.ErrorResponse's message (or the body).
func do(t testing.TB, method, url, contentType string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, string(b)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestPathNamesChecked: every route that takes a name or an identifier in
// its path refuses a value that breaks its rule (a project name breaks
// the spec language's name rule with "../x", 3,000 characters or upper
// case) with 400 and an error naming the field and the rule, before it
// reads or writes anything. Found by probing a server: PUT
// /v1/projects/..%2Fx created a project named "../x".
func TestPathNamesChecked(t *testing.T) {
	s, c, dir := inputServer(t, scheduler.Config{})
	ctx := context.Background()
	// Something for the reads to find: a project with a revision.
	if _, err := c.Revisions().Create(ctx, "ok", &api.RevisionCreateRequest{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	revBody := `{"id":"r2"}`
	timerBody := `{"schedule":"@hourly","topic":"ticks"}`
	blob := []byte("a blob")
	routes := []struct {
		method, path, body, field string
	}{
		{"PUT", "/v1/projects/%s", "", "project name"},
		{"GET", "/v1/projects/%s", "", "project name"},
		{"POST", "/v1/projects/%s/revisions", revBody, "project name"},
		{"GET", "/v1/projects/%s/revisions", "", "project name"},
		{"GET", "/v1/projects/%s/revisions/r1", "", "project name"},
		{"GET", "/v1/projects/ok/revisions/%s", "", "revision ID"},
		{"POST", "/v1/projects/%s/rollback", "", "project name"},
		{"POST", "/v1/projects/%s/keys", "", "project name"},
		{"PUT", "/v1/timers/%s", timerBody, "timer ID"},
		{"DELETE", "/v1/keys/%s", "", "key hash"},
		{"DELETE", "/v1/operator/raft/peers/%s", "", "server ID"},
		{"PUT", "/v1/blobs/sha256/%s", string(blob), "blob digest"},
		{"GET", "/v1/blobs/sha256/%s", "", "blob digest"},
	}
	bad := map[string]string{
		"escaped ../x": "..%2Fx",
		"over-long":    strings.Repeat("a", 3000),
		"upper case":   "Hello",
		"a space":      "a%20b",
	}
	for _, rt := range routes {
		for what, v := range bad {
			last := s.FSM().Index()
			url := base + fmt.Sprintf(rt.path, v)
			code, msg := do(t, rt.method, url, "application/json", strings.NewReader(rt.body))
			if code != 400 || !strings.Contains(msg, rt.field) || !strings.Contains(msg, "want ") {
				t.Errorf("%s %s with %s: %d %q; want 400 naming the %s and its rule", rt.method, rt.path, what, code, msg, rt.field)
			}
			unchanged(t, s, dir, last, rt.method+" "+rt.path+" with "+what)
		}
		// An empty segment matches no route (or another one): never 2xx,
		// and nothing is written.
		last := s.FSM().Index()
		code, _ := do(t, rt.method, base+fmt.Sprintf(rt.path, ""), "application/json", strings.NewReader(rt.body))
		if code < 400 {
			t.Errorf("%s %s with an empty segment: %d, want 4xx", rt.method, rt.path, code)
		}
		unchanged(t, s, dir, last, rt.method+" "+rt.path+" empty")
	}
	list, _, err := c.Projects().List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Projects) != 1 || list.Projects[0] != "ok" {
		t.Errorf("projects after the bad requests: %v, want only [ok]", list.Projects)
	}
	// The api client's errors carry the message.
	_, err = c.Projects().Put(ctx, "../x")
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(se.Message, "lower-case letters") {
		t.Errorf("client Put of ../x: %v, want a 400 *StatusError with the name rule", err)
	}
	// A valid name still works.
	if _, err := c.Projects().Put(ctx, "fine-name_2"); err != nil {
		t.Errorf("a valid name: %v", err)
	}
}

// TestBodyIdentifiersChecked: the identifiers inside a revision or timer
// body follow their rules too: a revision's ID, its timers' IDs (which
// must be the project's) and topics, its bundles' digests.
func TestBodyIdentifiersChecked(t *testing.T) {
	s, _, dir := inputServer(t, scheduler.Config{})
	base := "http://" + s.Addr()
	cases := []struct{ path, body, want string }{
		{"/v1/projects/p/revisions", `{"id":"../x"}`, "revision body: id"},
		{"/v1/projects/p/revisions", `{"id":"` + strings.Repeat("a", 3000) + `"}`, "revision body: id"},
		{"/v1/projects/p/revisions", `{"id":"R1"}`, "revision body: id"},
		{"/v1/projects/p/revisions", `{"id":""}`, "id is empty"},
		{"/v1/projects/p/revisions", `{"id":"r1","timers":[{"id":"other.f.0","schedule":"@hourly","topic":"p._timers.f"}]}`, "timers[0].id"},
		{"/v1/projects/p/revisions", `{"id":"r1","timers":[{"id":"p.f.0","schedule":"@hourly","topic":"a/b"}]}`, "timers[0]: topic"},
		{"/v1/projects/p/revisions", `{"id":"r1","timers":[{"id":"p.f.0","schedule":"whenever","topic":"t"}]}`, "schedule"},
		{"/v1/projects/p/revisions", `{"id":"r1","timers":[null]}`, "timers[0] is null"},
		{"/v1/projects/p/revisions", `{"id":"r1","bundles":{"f.js":"../../etc/passwd"}}`, "bundles"},
		{"/v1/timers/t", `{"id":"u","schedule":"@hourly","topic":"t"}`, "differs from the path"},
		{"/v1/timers/t", `{"project":"p","schedule":"@hourly","topic":"t"}`, "project"},
		{"/v1/timers/t", `{"schedule":"@hourly","topic":"bad topic"}`, "topic"},
	}
	for _, tc := range cases {
		method := "POST"
		if strings.HasPrefix(tc.path, "/v1/timers/") {
			method = "PUT"
		}
		last := s.FSM().Index()
		code, msg := do(t, method, base+tc.path, "application/json", strings.NewReader(tc.body))
		if code != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s: %d %q; want 400 about %q", tc.path, clipped(tc.body), code, msg, tc.want)
		}
		unchanged(t, s, dir, last, tc.path+" "+clipped(tc.body))
	}
}

func clipped(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// TestMalformedBodies: malformed JSON, a body with a field the API's type
// lacks, and trailing data get 400 naming the problem, and change
// nothing.
func TestMalformedBodies(t *testing.T) {
	s, _, dir := inputServer(t, scheduler.Config{})
	base := "http://" + s.Addr()
	cases := []struct{ method, path, body, want string }{
		{"POST", "/v1/projects/p/revisions", `{"id":"r1",`, "ends early"},
		{"POST", "/v1/projects/p/revisions", `{"id":"r1"]`, "malformed JSON at byte"},
		{"POST", "/v1/projects/p/revisions", `{"id":"r1","specz":{}}`, `unknown field "specz"`},
		{"POST", "/v1/projects/p/revisions", `{"id":"r1"}{"id":"r2"}`, "more than one JSON value"},
		{"POST", "/v1/projects/p/revisions", `{"id":7}`, `field "id"`},
		{"POST", "/v1/projects/p/revisions", ``, "empty"},
		{"PUT", "/v1/timers/t", `{"schedule":"@hourly","topic":"t","every":"day"}`, `unknown field "every"`},
		{"PUT", "/v1/timers/t", `[]`, "want a JSON"},
		{"POST", "/v1/projects/p/keys", `{"routes":["GET /x"],"admin":true}`, `unknown field "admin"`},
		{"POST", "/v1/projects/p/keys", `{"routes":`, "ends early"},
	}
	for _, tc := range cases {
		last := s.FSM().Index()
		code, msg := do(t, tc.method, base+tc.path, "application/json", strings.NewReader(tc.body))
		if code != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s %s: %d %q; want 400 saying %q", tc.method, tc.path, tc.body, code, msg, tc.want)
		}
		unchanged(t, s, dir, last, tc.method+" "+tc.path+" "+tc.body)
	}
}

// unsized hides a reader's length, so that the request is sent chunked,
// without a Content-Length.
type unsized struct{ io.Reader }

// TestOversizedBodies: a body over its endpoint's limit gets a 413 that
// says the limit and the setting that raises it, and the client really
// reads it (no connection reset), whether the body declared its length or
// not; nothing is written. Found by probing a server: a 50 MB revision
// body got a connection reset, and a 300 MB blob was stored.
func TestOversizedBodies(t *testing.T) {
	// The default JSON limit (4 MiB) against a 50 MB revision; a blob
	// limit of 2 MiB (set like any other) against a 10 MiB blob.
	s, c, dir := inputServer(t, scheduler.Config{MaxBlobBytes: 2 << 20})
	ctx := context.Background()
	base := "http://" + s.Addr()
	last := s.FSM().Index()

	big := strings.Repeat("x", 50<<20)
	_, err := c.Revisions().Create(ctx, "p", &api.RevisionCreateRequest{ID: "r1", Specs: map[string]string{"big.fn.hcl": big}})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 413 || !strings.Contains(se.Message, "4 MiB") || !strings.Contains(se.Message, "-max-request-bytes") {
		t.Errorf("a 50 MB revision through the client: %v; want a 413 *StatusError saying the 4 MiB limit and -max-request-bytes", err)
	}
	unchanged(t, s, dir, last, "a 50 MB revision")

	body := `{"id":"r1","specs":{"big.fn.hcl":"` + big + `"}}`
	code, msg := do(t, "POST", base+"/v1/projects/p/revisions", "application/json", unsized{strings.NewReader(body)})
	if code != 413 || !strings.Contains(msg, "4 MiB") || !strings.Contains(msg, "-max-request-bytes") {
		t.Errorf("a 50 MB chunked revision: %d %q; want 413 saying the limit", code, clipped(msg))
	}
	unchanged(t, s, dir, last, "a 50 MB chunked revision")

	code, msg = do(t, "PUT", base+"/v1/timers/t", "application/json", unsized{strings.NewReader(`{"schedule":"@hourly","topic":"` + big + `"}`)})
	if code != 413 {
		t.Errorf("a 50 MB chunked timer: %d %q; want 413", code, clipped(msg))
	}
	unchanged(t, s, dir, last, "a 50 MB timer")

	blob := bytes.Repeat([]byte("bundle!!"), 10<<20/8)
	sum := digestOf(blob)
	_, err = c.Blobs().Put(ctx, sum, bytes.NewReader(blob), int64(len(blob)))
	if !errors.As(err, &se) || se.Code != 413 || !strings.Contains(se.Message, "2 MiB") || !strings.Contains(se.Message, "-max-blob-bytes") {
		t.Errorf("a 10 MiB blob through the client: %v; want a 413 *StatusError saying the 2 MiB limit and -max-blob-bytes", err)
	}
	code, msg = do(t, "PUT", base+"/v1/blobs/sha256/"+sum, "application/octet-stream", unsized{bytes.NewReader(blob)})
	if code != 413 || !strings.Contains(msg, "2 MiB") {
		t.Errorf("a 10 MiB chunked blob: %d %q; want 413 saying the limit", code, msg)
	}
	unchanged(t, s, dir, last, "a 10 MiB blob")

	// At the limit is fine (the client sends it after 100 Continue).
	ok := blob[:2<<20]
	if _, err := c.Blobs().Put(ctx, digestOf(ok), bytes.NewReader(ok), int64(len(ok))); err != nil {
		t.Errorf("a blob of exactly the limit: %v", err)
	}
}

// TestBlobRefusedLeavesNothing: a blob whose content does not hash to its
// URL's digest is refused, and a blob upload interrupted midway is not
// kept; neither leaves a file, partial or whole.
func TestBlobRefusedLeavesNothing(t *testing.T) {
	s, _, dir := inputServer(t, scheduler.Config{})
	base := "http://" + s.Addr()
	content := []byte("the real content")
	code, msg := do(t, "PUT", base+"/v1/blobs/sha256/"+digestOf([]byte("other")), "application/octet-stream", bytes.NewReader(content))
	if code != 400 || !strings.Contains(msg, "hashes to") {
		t.Errorf("a blob under another digest: %d %q; want 400", code, msg)
	}
	if files := blobFiles(t, dir); len(files) > 0 {
		t.Errorf("a refused blob left %v", files)
	}

	// Interrupted: declare 1 MiB, send half, wait until the server is
	// writing it, hang up.
	content = bytes.Repeat([]byte("z"), 1<<20)
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "PUT /v1/blobs/sha256/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", digestOf(content), s.Addr(), len(content))
	_, _ = w.Write(content[:len(content)/2])
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the upload's temporary file to fill", func() bool {
		for _, f := range blobFiles(t, dir) {
			if fi, err := os.Stat(filepath.Join(dir, "blobs", f)); err == nil && fi.Size() > 0 {
				return true
			}
		}
		return false
	})
	conn.Close()
	waitFor(t, "the interrupted upload's files to go", func() bool { return len(blobFiles(t, dir)) == 0 })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOversizedBodyWholeSender: a client that sends its whole body before
// it reads the answer (as many do) gets the 413 too, not a connection
// reset: the server reads on, within bounds, after its answer.
func TestOversizedBodyWholeSender(t *testing.T) {
	s, _, dir := inputServer(t, scheduler.Config{})
	last := s.FSM().Index()
	body := `{"id":"r1","specs":{"big.fn.hcl":"` + strings.Repeat("x", 50<<20) + `"}}`
	for _, chunked := range []bool{false, true} {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(conn, 64<<10)
		if chunked {
			fmt.Fprintf(w, "POST /v1/projects/p/revisions HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", s.Addr())
			for b := body; len(b) > 0; {
				n := min(len(b), 32<<10)
				fmt.Fprintf(w, "%x\r\n%s\r\n", n, b[:n])
				b = b[n:]
			}
			fmt.Fprint(w, "0\r\n\r\n")
		} else {
			fmt.Fprintf(w, "POST /v1/projects/p/revisions HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", s.Addr(), len(body), body)
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("chunked=%v: sending the whole body: %v (the server hung up on it)", chunked, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("chunked=%v: reading the answer: %v", chunked, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(b), "4 MiB") {
			t.Errorf("chunked=%v: %d %s; want 413 saying the limit", chunked, resp.StatusCode, b)
		}
	}
	unchanged(t, s, dir, last, "a 50 MB revision sent whole")
}

// TestFollowerChecksInput: a follower checks names and body limits
// itself, before it forwards to the leader: the same 400 and 413, and
// nothing is written. An in-process cluster (schedtest).
func TestFollowerChecksInput(t *testing.T) {
	c := schedtest.MakeCluster(t, schedtest.Options{NoTimers: true})
	leader := c.Leader()
	follower := c.Followers(leader)[0]
	last := leader.Server.FSM().Index()
	code, msg := do(t, "PUT", follower.URL()+"/v1/projects/..%2Fx", "", nil)
	if code != 400 || !strings.Contains(msg, "project name") {
		t.Errorf("PUT ..%%2Fx on a follower: %d %q; want 400", code, msg)
	}
	body := `{"id":"r1","specs":{"big.fn.hcl":"` + strings.Repeat("x", 5<<20) + `"}}`
	for _, r := range []io.Reader{strings.NewReader(body), unsized{strings.NewReader(body)}} {
		code, msg = do(t, "POST", follower.URL()+"/v1/projects/p/revisions", "application/json", r)
		if code != 413 || !strings.Contains(msg, "4 MiB") {
			t.Errorf("a 5 MiB revision on a follower (%T): %d %q; want 413 saying the limit", r, code, clipped(msg))
		}
	}
	if got := leader.Server.FSM().Index(); got != last {
		t.Errorf("the leader's log grew from %d to %d", last, got)
	}
}

// TestPartialBlobsRemovedAtStart: the temporary file of an upload that a
// server stopped in the middle of is removed when it starts again.
func TestPartialBlobsRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	partial := filepath.Join(dir, "blobs", "sha256", ".upload-123")
	if err := os.MkdirAll(filepath.Dir(partial), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partial, []byte("half a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.Start(scheduler.Config{DataDir: dir, HTTPAddr: testport.Addr(t), RaftAddr: testport.Addr(t), Alone: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if files := blobFiles(t, dir); len(files) > 0 {
		t.Errorf("after a restart, blob files are left: %v", files)
	}
}

// TestForeignJobRefused: a revision whose job is not one the compiler
// makes for the project it is posted to (here: a job of another project,
// and one that runs raw_exec) is refused with 400 naming the field, and
// no state changes. The same job as compiled is accepted.
func TestForeignJobRefused(t *testing.T) {
	s, c, dataDir := inputServer(t, scheduler.Config{})
	ctx := context.Background()
	other, bundles := schedtest.RevisionJob(t, "bank", "r1", nil)
	mine, myBundles := schedtest.RevisionJob(t, "shop", "r1", nil)
	rawExec := json.RawMessage(strings.Replace(string(mine), `"Driver": "butter"`, `"Driver": "raw_exec"`, 1))
	if string(rawExec) == string(mine) {
		t.Fatal("the test's job has no Driver to replace")
	}
	last := s.FSM().Index()
	for _, tc := range []struct {
		name string
		req  *api.RevisionCreateRequest
		want string
	}{
		{"another project's job", &api.RevisionCreateRequest{ID: "r1", Job: other, Bundles: bundles}, `ID "butter-bank": a revision of project "shop" registers job "butter-shop" only`},
		{"a raw_exec task", &api.RevisionCreateRequest{ID: "r1", Job: rawExec, Bundles: myBundles}, `Driver "raw_exec"`},
		{"a blob the revision does not list", &api.RevisionCreateRequest{ID: "r1", Job: mine}, "for one of the revision's blobs"},
	} {
		_, err := c.Revisions().Create(ctx, "shop", tc.req)
		if api.StatusCode(err) != 400 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want 400 containing %q", tc.name, err, tc.want)
		}
	}
	unchanged(t, s, dataDir, last, "refused jobs")
	if _, err := c.Revisions().Create(ctx, "shop", &api.RevisionCreateRequest{ID: "r1", Job: mine, Bundles: myBundles}); err != nil {
		t.Fatalf("the compiled job: %v", err)
	}
}
