package driver_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/nomad/api"
)

// buildPlugin builds butter and nomad-driver-butter into a plugin dir.
func buildPlugin(t *testing.T) string {
	t.Helper()
	root := nomadtest.RepoRoot(t)
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{
		{"nomad-driver-butter", "./cmd/nomad-driver-butter"},
		{"butter", "./cmd/butter"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir
}

// blobServer serves a compiled project's bundles and schemas by digest,
// as the control plane will: the job's artifact blocks fetch from it and
// verify the checksum.
func blobServer(t *testing.T, proj *spec.Project, c *jobs.Compiled) string {
	t.Helper()
	blobs := map[string][]byte{}
	for _, a := range c.Artifacts {
		var buf bytes.Buffer
		if a.IsSchema {
			b, err := os.ReadFile(filepath.Join(proj.Dir, a.Path))
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
		} else if _, err := bundle.Write(os.DirFS(proj.Dir), a.Path, &buf); err != nil {
			t.Fatal(err)
		}
		blobs[a.Digest.Hex()] = buf.Bytes()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := blobs[strings.TrimPrefix(r.URL.Path, "/v1/blobs/sha256/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/blobs"
}

func startAgent(t *testing.T) *nomadtest.Agent { return startAgentWith(t, false) }

func startAgentWith(t *testing.T, persistent bool) *nomadtest.Agent {
	pluginDir := buildPlugin(t)
	return nomadtest.StartWith(t, nomadtest.Options{
		Persistent: persistent,
		PluginDir:  pluginDir,
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path = %q
  }
}
`, filepath.Join(pluginDir, "butter")),
		NodeReady: func(n *api.Node) bool {
			d := n.Drivers["butter"]
			return d != nil && d.Healthy
		},
	})
}

// deploy compiles the project in dir as a user does (butter job render,
// then nomad job run, with the job exactly as rendered) and returns the
// job and the address of its default pool once Nomad's service
// registration lists it and it answers.
func deploy(t *testing.T, agent *nomadtest.Agent, dir string) (*api.Job, string) {
	t.Helper()
	proj, rep := spec.Load(dir)
	if proj == nil {
		t.Fatalf("%v", rep.Diags)
	}
	c, err := jobs.Compile(proj)
	if err != nil {
		t.Fatal(err)
	}
	blobURL := blobServer(t, proj, c)
	c, err = jobs.Compile(proj, jobs.WithBlobURL(blobURL))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), proj.Name+".nomad.hcl")
	render := exec.Command(filepath.Join(pluginDir(agent), "butter"), "job", "render", "-blob-url", blobURL, "-out", file, dir)
	if out, err := render.CombinedOutput(); err != nil {
		t.Fatalf("butter job render: %v\n%s", err, out)
	}
	if out, code := agent.Run(t, "job", "run", "-detach", file); code != 0 {
		t.Fatalf("nomad job run: exit %d\n%s", code, out)
	}
	service := names.ServiceName(proj.Name, "default")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for _, addr := range serviceAddrs(agent, service) {
			if resp, err := http.Get(addr + "/v1/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 { // 203: healthy with warnings
					return c.Job, addr
				}
			}
		}
		if time.Now().After(deadline) {
			allocs, _, _ := agent.Client.Jobs().Allocations(*c.Job.ID, true, nil)
			for _, a := range allocs {
				for task, st := range a.TaskStates {
					for _, ev := range st.Events {
						t.Logf("alloc %s task %s: %s %s %s", a.ID[:8], task, ev.Type, ev.DisplayMessage, ev.DriverError)
					}
				}
			}
			t.Fatalf("service %s not healthy after 3m", service)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// serviceAddrs lists the addresses Nomad's service registration has for
// service.
func serviceAddrs(agent *nomadtest.Agent, service string) []string {
	regs, _, err := agent.Client.Services().Get(service, nil)
	if err != nil {
		return nil
	}
	var addrs []string
	for _, r := range regs {
		addrs = append(addrs, fmt.Sprintf("http://%s:%d", r.Address, r.Port))
	}
	return addrs
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOneAllocationManyRuntimes runs examples/hello with nomad job run's
// API: one allocation hosts the node, python, go and exec functions, found
// through Nomad's service registration, and each answers.
func TestOneAllocationManyRuntimes(t *testing.T) {
	agent := startAgent(t)
	job, addr := deploy(t, agent, filepath.Join(nomadtest.RepoRoot(t), "examples", "hello"))

	allocs, _, err := agent.Client.Jobs().Allocations(*job.ID, false, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %d, %v; want exactly one", len(allocs), err)
	}
	for _, fn := range []string{"echo-node", "echo-python", "echo-go", "echo-exec"} {
		code, body := post(t, addr+"/v1/invoke/"+fn, "hello "+fn)
		if code != 200 || body != "hello "+fn {
			t.Errorf("%s: %d %q", fn, code, body)
		}
	}
	// The driver reports the memory of the pool's whole process tree: with
	// a Node worker running (some 40 MiB alone), the task's RSS must pass
	// 20 MiB, which the pool process by itself never reaches. Usage is
	// sampled every second, so wait for a sample taken after the calls.
	deadline := time.Now().Add(60 * time.Second)
	var rss uint64
	for rss < 20<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("task RSS stayed at %.1f MiB: the workers are not counted", float64(rss)/(1<<20))
		}
		time.Sleep(250 * time.Millisecond)
		stats, err := agent.Client.Allocations().Stats(&api.Allocation{ID: allocs[0].ID, NodeID: allocs[0].NodeID}, nil)
		if err == nil && stats.ResourceUsage != nil && stats.ResourceUsage.MemoryStats != nil {
			rss = stats.ResourceUsage.MemoryStats.RSS
		}
	}
	t.Logf("pool task RSS with four warm runtimes: %.1f MiB", float64(rss)/(1<<20))
}

// TestDrainOnStop: stopping the job while a call is in flight lets that
// call finish. The call cannot end before the test lets it: the function
// waits for a line of its input, which the test writes only once the
// pool is draining (it no longer takes connections).
func TestDrainOnStop(t *testing.T) {
	agent := startAgent(t)
	job, addr := deploy(t, agent, "testdata/drain")
	in, release := io.Pipe()
	defer release.Close()
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		// Not post: t.Fatal belongs to the test's goroutine.
		resp, err := http.Post(addr+"/v1/invoke/slow", "text/plain", in)
		if err != nil {
			done <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, string(b)}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !inflight(addr, "slow") {
		if time.Now().After(deadline) {
			t.Fatal("the call never got in flight")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := agent.Client.Jobs().Deregister(*job.ID, false, nil); err != nil {
		t.Fatal(err)
	}
	// Draining: the pool stops taking connections.
	waitRefusing(t, addr, 60*time.Second, "the job was stopped")
	select {
	case a := <-done:
		t.Fatalf("the call ended (%d %q) before the test let it", a.code, a.body)
	default:
	}
	if _, err := io.WriteString(release, "go\n"); err != nil {
		t.Fatalf("the call's input: %v", err)
	}
	release.Close()
	select {
	case a := <-done:
		if a.code != 200 || a.body != "finished\n" {
			t.Errorf("the in-flight call during the stop got %d %q; want 200 \"finished\"", a.code, a.body)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the call in flight did not finish within 60s of its release")
	}
}

// TestClientRestart restarts the Nomad client while a client loop sends
// requests to examples/pipeline, deployed exactly as `butter job render`
// writes it, Nomad service and check included. The pool keeps serving (it
// runs outside the plugin, under the executor), RecoverTask reattaches,
// the restarted client re-runs the allocation's hooks (group_services
// re-registers the service), and the loop sees no failure. The recovered
// handle still stops the task.
func TestClientRestart(t *testing.T) {
	agent := startAgentWith(t, true)
	job, addr := deploy(t, agent, filepath.Join(nomadtest.RepoRoot(t), "examples", "pipeline"))
	allocs, _, err := agent.Client.Jobs().Allocations(*job.ID, false, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %v %v", allocs, err)
	}
	allocID := allocs[0].ID
	pidBefore := poolPid(t, agent, allocID)

	load := startLoad(addr+"/v1/invoke/to-upper", "abc", "ABC")
	defer load.stop()
	load.waitSent(t, 20)

	restartedAt := time.Now()
	agent.Restart(t)

	// The restarted client ran the allocation's pre-run hooks again:
	// group_services (which re-registers the service with Nomad) and, after
	// it, the checks hook, which a failed group_services never reaches
	// (Nomad stops at the first failing hook and kills the tasks). So a
	// check result stamped after the restart means both ran.
	waitFor(t, 2*time.Minute, "a passing health check run by the restarted client", func() bool {
		checks, err := agent.Client.Allocations().Checks(allocID, nil)
		if err != nil {
			return false
		}
		for _, c := range checks {
			if c.Status == "success" && c.Timestamp > restartedAt.Unix() {
				return true
			}
		}
		return false
	}, func() { logTaskEvents(t, agent, allocID) })

	if pid := poolPid(t, agent, allocID); pid != pidBefore {
		t.Errorf("pool pid changed across the restart: %d -> %d", pidBefore, pid)
	}
	// Keep the loop going past the recovery.
	load.waitSent(t, load.counts().sent+50)
	load.stop()
	c := load.counts()
	t.Logf("client loop across the client restart: %d requests, %d failed", c.sent, c.failed)
	if c.failed != 0 {
		t.Errorf("%d of %d requests failed across the restart: %v", c.failed, c.sent, c.failures)
	}

	a, _, err := agent.Client.Allocations().Info(allocID, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := a.TaskStates["pool"]
	if a.ClientStatus != "running" || ts == nil || ts.State != "running" || ts.Restarts != 0 {
		t.Errorf("after the restart: allocation %s, task %+v; want running, never restarted", a.ClientStatus, ts)
	}
	if ts != nil {
		for _, ev := range ts.Events {
			if ev.Time > restartedAt.UnixNano() && ev.Type != "Received" {
				t.Errorf("task event after the restart: %s %s %s", ev.Type, ev.DisplayMessage, ev.DriverError)
			}
		}
	}
	if got := serviceAddrs(agent, names.ServiceName("pipeline", "default")); len(got) != 1 || got[0] != addr {
		t.Errorf("service registrations after the restart: %v; want [%s]", got, addr)
	}

	// The recovered handle still drives the task: a stop ends the pool.
	if _, _, err := agent.Client.Jobs().Deregister(*job.ID, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the allocation to complete after the stop", func() bool {
		a, _, err := agent.Client.Allocations().Info(allocID, nil)
		return err == nil && a.ClientStatus == "complete"
	}, func() { logTaskEvents(t, agent, allocID) })
}

// waitFor polls cond until it holds or the timeout passes; then it runs
// explain and fails the test.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, explain func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if explain != nil {
				explain()
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func logTaskEvents(t *testing.T, agent *nomadtest.Agent, allocID string) {
	t.Helper()
	a, _, err := agent.Client.Allocations().Info(allocID, nil)
	if err != nil {
		t.Logf("allocation %s: %v", allocID, err)
		return
	}
	for task, st := range a.TaskStates {
		for _, ev := range st.Events {
			t.Logf("task %s event: %s %s %s", task, ev.Type, ev.DisplayMessage, ev.DriverError)
		}
	}
}

// load sends one request after another to a URL until stopped, and counts
// the answers that are not exactly what it expects.
type load struct {
	done chan struct{}
	quit chan struct{}
	once sync.Once

	mu sync.Mutex
	c  loadCounts
}

type loadCounts struct {
	sent, failed int
	failures     []string
}

func startLoad(url, body, want string) *load {
	l := &load{done: make(chan struct{}), quit: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			var failure string
			resp, err := client.Post(url, "text/plain", strings.NewReader(body))
			if err != nil {
				failure = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != want {
					failure = fmt.Sprintf("%d %q", resp.StatusCode, b)
				}
			}
			l.mu.Lock()
			l.c.sent++
			if failure != "" {
				l.c.failed++
				if len(l.c.failures) < 10 {
					l.c.failures = append(l.c.failures, failure)
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *load) counts() loadCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.c
	c.failures = append([]string(nil), c.failures...)
	return c
}

// waitSent waits until the loop has sent n requests.
func (l *load) waitSent(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d requests sent", n), func() bool { return l.counts().sent >= n }, nil)
}

// stop ends the loop and waits for its last request.
func (l *load) stop() {
	l.once.Do(func() { close(l.quit) })
	<-l.done
}

// poolPid finds the pool process of an allocation: the process whose
// command line names the pool config in that allocation's task dir.
func poolPid(t *testing.T, agent *nomadtest.Agent, allocID string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			if len(args) > 2 && args[1] == "pool" && strings.Contains(strings.Join(args, " "), allocID) {
				var pid int
				fmt.Sscan(filepath.Base(filepath.Dir(m)), &pid)
				return pid
			}
		}
		if time.Now().After(deadline) {
			if a, _, err := agent.Client.Allocations().Info(allocID, nil); err == nil && a.TaskStates["pool"] != nil {
				for _, ev := range a.TaskStates["pool"].Events {
					t.Logf("task event: %s %s %s", ev.Type, ev.DisplayMessage, ev.DriverError)
				}
			}
			t.Fatalf("no pool process for allocation %s", allocID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pluginDir is where buildPlugin put the binaries the agent loads.
func pluginDir(agent *nomadtest.Agent) string { return agent.PluginDir() }

// TestDensityOnOneAllocation: a pool of 200 functions (150 exec, 50 Go
// workers) starts on one Nomad allocation and every function answers. It
// prints the task's RSS and the time from `nomad job run` to each
// function's first answer. A functional check, not a benchmark.
func TestDensityOnOneAllocation(t *testing.T) {
	if testing.Short() {
		t.Skip("density check skipped in -short mode")
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "functions", "gofn"), os.DirFS("../pool/testdata/gofn")); err != nil {
		t.Fatal(err)
	}
	var spec strings.Builder
	spec.WriteString("project \"dense\" {}\n")
	for i := range 150 {
		fmt.Fprintf(&spec, "function \"cat-%03d\" {\n  runtime = \"exec\"\n  command = [\"cat\"]\n  memory  = 16\n  cpu     = 5\n  instances {\n    max = 1\n  }\n}\n", i)
	}
	for i := range 50 {
		fmt.Fprintf(&spec, "function \"go-%03d\" {\n  runtime = \"go\"\n  source  = \"functions/gofn\"\n  memory  = 32\n  cpu     = 5\n  instances {\n    min = 1\n    max = 1\n  }\n}\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "dense.fn.hcl"), []byte(spec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t)
	start := time.Now()
	job, addr := deploy(t, agent, dir)
	ready := time.Since(start)

	type result struct {
		fn  string
		at  time.Duration
		err string
	}
	results := make(chan result, 200)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range 200 {
		name, in, want := fmt.Sprintf("cat-%03d", i), "dense", "dense"
		if i >= 150 {
			name, want = fmt.Sprintf("go-%03d", i-150), "DENSE"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := http.Post(addr+"/v1/invoke/"+name, "text/plain", strings.NewReader(in))
			r := result{fn: name, at: time.Since(start)}
			if err != nil {
				r.err = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != want {
					r.err = fmt.Sprintf("%d %q", resp.StatusCode, b)
				}
			}
			results <- r
		}()
	}
	wg.Wait()
	close(results)
	var times []time.Duration
	for r := range results {
		if r.err != "" {
			t.Errorf("%s: %s", r.fn, r.err)
		}
		times = append(times, r.at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })

	allocs, _, err := agent.Client.Jobs().Allocations(*job.ID, false, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %d %v; want one", len(allocs), err)
	}
	// Wait for a usage sample that includes the 50 Go workers (some 2 MiB
	// each at least).
	var rss uint64
	deadline := time.Now().Add(20 * time.Second)
	for rss < 100<<20 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if st, err := agent.Client.Allocations().Stats(&api.Allocation{ID: allocs[0].ID, NodeID: allocs[0].NodeID}, nil); err == nil && st.ResourceUsage != nil && st.ResourceUsage.MemoryStats != nil {
			rss = st.ResourceUsage.MemoryStats.RSS
		}
	}
	t.Logf("200 functions (150 exec, 50 go workers) on one allocation: task RSS %.0f MiB; service healthy %s after nomad job run; first answers p50 %s, max %s",
		float64(rss)/(1<<20), ready.Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
}

// waitRefusing waits until the pool at addr takes no more connections (it
// drains), failing the test if it still does d after what happened.
func waitRefusing(t *testing.T, addr string, d time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "http://"), time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the pool still takes connections %s after %s", d, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
