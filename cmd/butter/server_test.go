package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testport"
)

// serverProc is a `butter server` process.
type serverProc struct {
	http, raft, dir string
	join            []string
	extra           []string
	cmd             *exec.Cmd
	done            chan error
	log             *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string { return testport.Addr(t) }

func (s *serverProc) start(t *testing.T) {
	t.Helper()
	s.log = &syncBuffer{}
	args := append([]string{"server", "-data-dir", s.dir, "-http-addr", s.http, "-raft-addr", s.raft,
		"-bootstrap-expect", "3", "-join", strings.Join(s.join, ","), "-snapshot-threshold", "64"}, s.extra...)
	s.cmd = exec.Command(butterBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
}

func (s *serverProc) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func cluster3(t *testing.T, extra ...string) []*serverProc {
	t.Helper()
	var servers []*serverProc
	for i := range 3 {
		servers = append(servers, &serverProc{http: freeAddr(t), raft: freeAddr(t), dir: filepath.Join(t.TempDir(), fmt.Sprint(i)), extra: extra})
	}
	for _, s := range servers {
		for _, o := range servers {
			if o != s {
				s.join = append(s.join, o.http)
			}
		}
		s.start(t)
	}
	t.Cleanup(func() {
		for _, s := range servers {
			s.kill()
			if t.Failed() {
				t.Logf("server %s log (tail):\n%s", s.http, tailString(s.log.String(), 3000))
			}
		}
	})
	return servers
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var httpc = &http.Client{Timeout: 3 * time.Second}

func leaderOf(servers []*serverProc) string {
	for _, s := range servers {
		if s.cmd == nil {
			continue
		}
		var out struct{ Leader string }
		resp, err := httpc.Get("http://" + s.http + "/v1/status/leader")
		if err != nil {
			continue
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.Leader != "" {
			return out.Leader
		}
	}
	return ""
}

func write(addr, name string) error {
	req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/projects/"+name, nil)
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return nil
}

func projectsAt(addr string) map[string]bool {
	resp, err := httpc.Get("http://" + addr + "/v1/projects?stale")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct{ Projects []string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	m := map[string]bool{}
	for _, p := range out.Projects {
		m[p] = true
	}
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true after %s", what, d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestLeaderLoss kills the leader of a 3-node cluster with SIGKILL during
// 200 writes through the API, five times. A new leader serves within
// seconds (the median is printed), every acknowledged write is on every
// survivor, and the killed node rejoins and catches up — by snapshot
// install, since it misses more entries than the leader keeps in its log.
func TestLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("leader-loss runs skipped in -short mode")
	}
	servers := cluster3(t)
	waitFor(t, 30*time.Second, "a first leader", func() bool { return leaderOf(servers) != "" })
	byAddr := map[string]*serverProc{}
	for _, s := range servers {
		byAddr[s.http] = s
	}
	acked := map[string]bool{}
	var recoveries []time.Duration
	for run := range 5 {
		var killed *serverProc
		var killedAt time.Time
		recovered := time.Duration(0)
		for i := 0; i < 200; i++ {
			if i == 60 {
				killed = byAddr[leaderOf(servers)]
				if killed == nil {
					t.Fatal("no leader to kill")
				}
				killed.kill()
				killedAt = time.Now()
			}
			name := fmt.Sprintf("r%d-w%03d", run, i)
			// Write through any live node (followers forward), retrying
			// until acknowledged; only acknowledged writes count.
			deadline := time.Now().Add(30 * time.Second)
			for {
				var err error
				for _, s := range servers {
					if s.cmd == nil {
						continue
					}
					if err = write(s.http, name); err == nil {
						break
					}
				}
				if err == nil {
					acked[name] = true
					if killed != nil && recovered == 0 {
						recovered = time.Since(killedAt)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("run %d: write %s not acknowledged within 30s: %v", run, name, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		recoveries = append(recoveries, recovered)
		// Every acknowledged write is on every survivor.
		for _, s := range servers {
			if s.cmd == nil {
				continue
			}
			waitFor(t, 10*time.Second, "survivor "+s.http+" holds every acknowledged write", func() bool {
				have := projectsAt(s.http)
				for name := range acked {
					if !have[name] {
						return false
					}
				}
				return true
			})
		}
		// Snapshot the leader, which compacts its log past what the killed
		// node has: the node can only catch up by a snapshot install.
		resp, err := httpc.Get("http://" + leaderOf(servers) + "/v1/operator/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		snap, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(snap) == 0 {
			t.Fatalf("snapshot: %s, %d bytes", resp.Status, len(snap))
		}
		// The killed node rejoins and catches up.
		killed.start(t)
		waitFor(t, 30*time.Second, "killed node "+killed.http+" caught up", func() bool {
			have := projectsAt(killed.http)
			for name := range acked {
				if !have[name] {
					return false
				}
			}
			return true
		})
		// Raft logs the install just after the FSM restore that made the
		// writes visible: wait for the line rather than race it.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(killed.log.String(), "Installed remote snapshot") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(killed.log.String(), "Installed remote snapshot") {
			t.Errorf("run %d: the killed node caught up without a snapshot install", run)
		}
	}
	sorted := append([]time.Duration(nil), recoveries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("leader killed during 200 writes, 5 runs: time to the next acknowledged write %v; median %v", recoveries, sorted[2])
	if sorted[2] > 5*time.Second {
		t.Errorf("median time to a new serving leader %v, want a few seconds at most", sorted[2])
	}
}

// TestOperatorCommands drives a 3-server cluster with the operator CLI:
// list-peers, snapshot save and restore, remove-peer.
func TestOperatorCommands(t *testing.T) {
	servers := cluster3(t)
	waitFor(t, 30*time.Second, "a leader", func() bool { return leaderOf(servers) != "" })
	addr := "http://" + servers[0].http
	for _, p := range []string{"alpha", "beta"} {
		if err := write(servers[0].http, p); err != nil {
			t.Fatal(err)
		}
	}
	r := butter(t, ".", "operator", "raft", "list-peers", "-address", addr)
	if r.code != 0 || strings.Count(r.stdout, "127.0.0.1:") < 6 || strings.Count(r.stdout, "leader") != 1 {
		t.Fatalf("list-peers: %+v", r)
	}
	snap := filepath.Join(t.TempDir(), "state.snap")
	if r := butter(t, ".", "operator", "snapshot", "save", "-address", addr, snap); r.code != 0 || !strings.Contains(r.stdout, "Saved snapshot") {
		t.Fatalf("snapshot save: %+v", r)
	}
	if err := write(servers[0].http, "gamma"); err != nil {
		t.Fatal(err)
	}
	if r := butter(t, ".", "operator", "snapshot", "restore", "-address", addr, snap); r.code != 0 {
		t.Fatalf("snapshot restore: %+v", r)
	}
	leader := leaderOf(servers)
	have := projectsAt(leader)
	if !have["alpha"] || !have["beta"] || have["gamma"] {
		t.Errorf("after the restore the leader holds %v; want alpha and beta only", have)
	}
	// Remove a follower.
	var follower string
	for _, s := range servers {
		if s.http != leader {
			follower = s.http
		}
	}
	if r := butter(t, ".", "operator", "raft", "remove-peer", "-address", addr, "-peer-id", follower); r.code != 0 {
		t.Fatalf("remove-peer: %+v", r)
	}
	r = butter(t, ".", "operator", "raft", "list-peers", "-address", "http://"+leader)
	if strings.Contains(r.stdout, follower+" ") {
		t.Errorf("%s still listed after remove-peer:\n%s", follower, r.stdout)
	}
	if r := butter(t, ".", "operator", "raft", "remove-peer", "-address", addr); r.code != 2 {
		t.Errorf("remove-peer without -peer-id: exit %d", r.code)
	}
}

// TestTimersUnderFailover runs a per-second timer on a 3-server cluster and
// kills the leader twice. docs/timers.md promises at least once per tick:
// every second between the first and the last tick seen must have fired
// (late, after a failover), and duplicates are allowed and counted.
func TestTimersUnderFailover(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	if err := broker.EnsureTopics(context.Background(), kadm.NewClient(admCl), []broker.Topic{{Name: "ticks", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	servers := cluster3(t, "-kafka-brokers", dev.Addr)
	waitFor(t, 30*time.Second, "a leader", func() bool { return leaderOf(servers) != "" })
	req, _ := http.NewRequest("PUT", "http://"+servers[0].http+"/v1/timers/every-second", strings.NewReader(`{"schedule":"* * * * * *","topic":"ticks"}`))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("define timer: %s", resp.Status)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ConsumeTopics("ticks"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fired := map[string]int{}
	readTicks := func(n int) {
		t.Helper()
		target := len(fired) + n
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for len(fired) < target && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { fired[broker.Header(r, broker.HeaderID)]++ })
		}
		if len(fired) < target {
			t.Fatalf("only %d distinct ticks after 30s, want %d", len(fired), target)
		}
	}
	byAddr := map[string]*serverProc{}
	for _, s := range servers {
		byAddr[s.http] = s
	}
	readTicks(3)
	first := byAddr[leaderOf(servers)]
	first.kill()
	readTicks(3)
	first.start(t) // back, so that a second kill leaves a majority
	waitFor(t, 30*time.Second, "the first killed server rejoined", func() bool {
		resp, err := httpc.Get("http://" + first.http + "/v1/status/leader")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct{ Leader string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out.Leader != ""
	})
	second := byAddr[leaderOf(servers)]
	second.kill()
	readTicks(4)

	var ticks []time.Time
	dups := 0
	for id, n := range fired {
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(id, "every-second@"))
		if err != nil {
			t.Fatalf("tick id %q", id)
		}
		ticks = append(ticks, ts)
		dups += n - 1
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Before(ticks[j]) })
	for i := 1; i < len(ticks); i++ {
		if gap := ticks[i].Sub(ticks[i-1]); gap != time.Second {
			t.Errorf("ticks %s and %s are %s apart: a tick was lost", ticks[i-1].Format(time.TimeOnly), ticks[i].Format(time.TimeOnly), gap)
		}
	}
	t.Logf("per-second timer, leader killed twice: %d ticks from %s to %s, none missing, %d duplicates (at least once)",
		len(ticks), ticks[0].Format(time.TimeOnly), ticks[len(ticks)-1].Format(time.TimeOnly), dups)
}

// TestDeployRevisionsRollback: butter deploy uploads bundles by hash and
// records revisions; unchanged content re-activates; an edit makes the next
// revision; rollback activates the previous one. The server serves the
// uploaded bundles to Nomad's artifact fetcher at the job's artifact URLs.
func TestDeployRevisionsRollback(t *testing.T) {
	s := singleServer(t)
	addr := "http://" + s.http

	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repo(t), "examples", "hello"))); err != nil {
		t.Fatal(err)
	}
	r := butter(t, ".", "deploy", "-address", addr, dir)
	if r.code != 0 || !strings.Contains(r.stdout, "(new)") || !strings.Contains(r.stdout, "uploading functions/echo-node") {
		t.Fatalf("first deploy: %+v", r)
	}
	first := revisionIn(r.stdout)
	if r := butter(t, ".", "deploy", "-address", addr, dir); r.code != 0 || !strings.Contains(r.stdout, "unchanged") || revisionIn(r.stdout) != first {
		t.Errorf("deploying unchanged content: %+v", r)
	}
	// Every artifact URL of the rendered job answers with its content.
	rendered := butter(t, ".", "job", "render", "-format", "json", "-blob-url", addr+"/v1/blobs", dir)
	var job struct {
		Job struct {
			TaskGroups []struct {
				Tasks []struct {
					Artifacts []struct{ GetterSource string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(rendered.stdout), &job); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tg := range job.Job.TaskGroups {
		for _, a := range tg.Tasks[0].Artifacts {
			resp, err := httpc.Get(a.GetterSource)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("artifact %s: %v %v", a.GetterSource, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no artifacts checked")
	}
	// An edited function deploys as the next revision.
	if err := os.WriteFile(filepath.Join(dir, "functions", "echo-node", "index.js"), []byte("exports.handle = async (x) => x;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butter(t, ".", "deploy", "-address", addr, dir)
	second := revisionIn(r.stdout)
	if r.code != 0 || second == first || !strings.Contains(r.stdout, "(new)") {
		t.Fatalf("deploying an edit: %+v", r)
	}
	list := butter(t, ".", "revisions", "-address", addr, "hello")
	if list.code != 0 || !strings.Contains(list.stdout, first) || !activeIs(list.stdout, second) {
		t.Fatalf("revisions: %+v", list)
	}
	if r := butter(t, ".", "rollback", "-address", addr, "hello"); r.code != 0 || !strings.Contains(r.stdout, first) {
		t.Fatalf("rollback: %+v", r)
	}
	if list := butter(t, ".", "revisions", "-address", addr, "hello"); !activeIs(list.stdout, first) {
		t.Errorf("after the rollback:\n%s", list.stdout)
	}
	if r := butter(t, ".", "rollback", "-address", addr, "hello"); r.code != 1 || !strings.Contains(r.stderr, "no revision before") {
		t.Errorf("rollback past the first revision: %+v", r)
	}
}

// revisionIn finds "Revision <id>" in deploy's output.
func revisionIn(out string) string {
	_, rest, ok := strings.Cut(out, "Revision ")
	if !ok {
		return ""
	}
	return strings.Fields(rest)[0]
}

// activeIs reports whether the revisions listing marks id active.
func activeIs(listing, id string) bool {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id && f[1] == "*" {
			return true
		}
	}
	return false
}

// TestDeployToNomad: with a Nomad address, the leader registers the active
// revision's job: butter deploy examples/hello gives a running job whose
// meta carries the revision (its bundles fetched from the server's blob
// API by Nomad's artifact fetcher); an edit deploys the next revision; a
// rollback puts the previous revision's job back.
func TestDeployToNomad(t *testing.T) {
	root := repo(t)
	pluginDir := buildPlugin(t, root)
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: pluginDir,
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", butterBin),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	s := singleServer(t, "-nomad-addr", agent.Addr)
	addr := "http://" + s.http

	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "examples", "hello"))); err != nil {
		t.Fatal(err)
	}
	// A short healthy deadline, so the failing revision below fails fast.
	editFile(t, filepath.Join(dir, "hello.fn.hcl"), `project "hello" {}`, `project "hello" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "25s"
  }
}`)
	running := func(rev string) func() bool {
		return func() bool {
			job, _, err := agent.Client.Jobs().Info("butter-hello", nil)
			if err != nil || job.Meta["butter_revision"] != rev {
				return false
			}
			allocs, _, err := agent.Client.Jobs().Allocations("butter-hello", false, nil)
			if err != nil {
				return false
			}
			for _, a := range allocs {
				if a.ClientStatus == "running" && a.JobVersion == *job.Version {
					return true
				}
			}
			return false
		}
	}
	r := butter(t, ".", "deploy", "-address", addr, dir)
	first := revisionIn(r.stdout)
	if r.code != 0 || first == "" || !strings.Contains(r.stdout, "deploying: ") || !strings.Contains(r.stdout, "is healthy") {
		t.Fatalf("deploy should follow the Nomad deployment to healthy: %+v", r)
	}
	t.Logf("deploy output:\n%s", r.stdout)
	waitFor(t, 3*time.Minute, "revision "+first+" running in Nomad", running(first))

	if err := os.WriteFile(filepath.Join(dir, "functions", "echo-node", "index.js"), []byte("exports.handle = async (x) => x;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butter(t, ".", "deploy", "-address", addr, dir)
	second := revisionIn(r.stdout)
	if r.code != 0 || second == first {
		t.Fatalf("deploy of the edit: %+v", r)
	}
	waitFor(t, 3*time.Minute, "revision "+second+" running in Nomad", running(second))

	if r := butter(t, ".", "rollback", "-address", addr, "hello"); r.code != 0 || !strings.Contains(r.stdout, "is healthy") {
		t.Fatalf("rollback: %+v", r)
	}
	waitFor(t, 3*time.Minute, "revision "+first+" running again after the rollback", running(first))

	// A revision whose allocations fail: echo-node keeps one instance, and
	// its module throws at load, so the pool's health check fails and the
	// Nomad deployment fails at its healthy deadline. The deployer reports
	// the revision failed and rolls back to the last healthy one.
	editFile(t, filepath.Join(dir, "hello.fn.hcl"), "min         = 0", "min         = 1")
	if err := os.WriteFile(filepath.Join(dir, "functions", "echo-node", "index.js"), []byte("throw new Error('broken on purpose');\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = butter(t, ".", "deploy", "-address", addr, dir)
	third := revisionIn(r.stdout)
	t.Logf("failing deploy output:\n%s\n%s", r.stdout, r.stderr)
	if r.code != 1 || third == "" || third == first || third == second {
		t.Fatalf("the failing revision's deploy should exit 1: %+v", r)
	}
	if !strings.Contains(r.stdout, "failed: ") || !strings.Contains(r.stdout, "rolled back to "+first) || !strings.Contains(r.stderr, "is back on revision "+first) {
		t.Fatalf("the deploy output should report the failure and the rollback to %s: %+v", first, r)
	}
	if !strings.Contains(r.stdout, "echo-node") {
		t.Errorf("the failure should name the function whose instances cannot start: %s", r.stdout)
	}
	waitFor(t, 3*time.Minute, "revision "+first+" running again after the automatic rollback", running(first))
	waitFor(t, 3*time.Minute, "revision "+first+" healthy again", func() bool {
		r := butter(t, ".", "status", "-address", addr, "hello")
		return r.code == 0 && strings.Contains(r.stdout, "Active     "+first) && strings.Contains(r.stdout, "Status     healthy")
	})
	r = butter(t, ".", "revisions", "-address", addr, "hello")
	if !regexp.MustCompile(third + `\s+failed`).MatchString(r.stdout) {
		t.Errorf("revisions should list %s as failed:\n%s", third, r.stdout)
	}
}

// buildPlugin builds the task-driver plugin from the repository at root
// into a new plugin directory, and returns the directory.
func buildPlugin(tb testing.TB, root string) string {
	tb.Helper()
	dir := tb.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "nomad-driver-butter"), "./cmd/nomad-driver-butter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return dir
}

// editFile replaces old with new in a file, and fails when old is absent.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// singleServer starts a one-node `butter server` and waits until it leads.
func singleServer(t *testing.T, extra ...string) *serverProc {
	t.Helper()
	s := &serverProc{http: freeAddr(t), raft: freeAddr(t), dir: t.TempDir()}
	s.log = &syncBuffer{}
	args := append([]string{"server", "-data-dir", s.dir, "-http-addr", s.http, "-raft-addr", s.raft}, extra...)
	s.cmd = exec.Command(butterBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tailString(s.log.String(), 3000))
		}
	})
	waitFor(t, 30*time.Second, "the server leads", func() bool { return leaderOf([]*serverProc{s}) != "" })
	return s
}
