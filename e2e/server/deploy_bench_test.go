package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/names"
)

// benchProject is the project BenchmarkDeploy deploys: one Node function
// behind one route, whose answer carries its version.
const benchProject = `project "bench" {}

function "greet" {
  runtime = "node"
  source  = "functions/greet"
  handler = "index.handle"
  timeout = "5s"
  trigger "http" {
    route = "POST /greet"
  }
}
`

// benchWriteProject writes benchProject in a new directory with the
// function answering "<version>:<input>".
func benchWriteProject(b *testing.B, version string) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "bench")
	if err := os.MkdirAll(filepath.Join(dir, "functions", "greet"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.fn.hcl"), []byte(benchProject), 0o644); err != nil {
		b.Fatal(err)
	}
	benchWriteGreet(b, dir, version)
	return dir
}

// benchWriteGreet writes the function's source as an editor saves it:
// beside, then renamed over.
func benchWriteGreet(b *testing.B, dir, version string) {
	b.Helper()
	src := fmt.Sprintf("exports.handle = async (input) => Buffer.concat([Buffer.from(%q), input]);\n", version+":")
	tmp := filepath.Join(dir, "functions", "greet", ".index.js.tmp")
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "functions", "greet", "index.js")); err != nil {
		b.Fatal(err)
	}
}

// benchProc is a butter process in its own process group.
type benchProc struct {
	args []string
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan error
}

func benchStart(b *testing.B, args ...string) *benchProc {
	b.Helper()
	p := &benchProc{args: args, cmd: exec.Command(e2etest.Bin(), args...), out: &testlog.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	b.Cleanup(p.stop)
	return p
}

// stop interrupts the process group, as Ctrl-C does, and waits for the
// exit; after 30s it kills the group.
func (p *benchProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// benchUntilAnswer posts x to url every 5ms until the answer is
// want+":x", and fails b after d.
func benchUntilAnswer(b *testing.B, url, want string, d time.Duration, procs ...*benchProc) {
	b.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(d)
	last := ""
	for {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err == nil {
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(got) == want+":x" {
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, got)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				b.Logf("%s output (tail):\n%s", strings.Join(p.args, " "), e2etest.Tail(p.out.String(), 4000))
			}
			b.Fatalf("%s answered %s after %s, want %q", url, last, d, want+":x")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkDeploy measures the time from a deploy to its first answer,
// for a Node function behind a route:
//
//   - baseline: `butter invoke -local`, the function run once in a pool
//     inside a new butter process, to its exit: what running the code
//     costs, with no platform around it;
//   - dev-start: `butter dev` started on the project (a new data dir
//     each time) until the route answers through its gateway: control
//     plane, broker, pool and gateway started, the revision recorded;
//   - dev-redeploy: the function's source saved with a new version while
//     `butter dev` runs, until the route answers with it (the watcher
//     polls the project every 300ms and lets saves settle for 200ms);
//   - nomad: `butter deploy` of a new version to a control plane that
//     deploys to a Nomad dev agent (the butter task driver, bin/nomad from
//     `make tools`), until the gateway (`butter gateway` following Nomad's
//     services and the control plane's routes every second) answers with
//     it. Skipped when bin/nomad is missing, unless BUTTER_REQUIRE_NOMAD is
//     set.
//
// Each operation is one deploy: run it with -benchtime=5x or so.
func BenchmarkDeploy(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		dir := benchWriteProject(b, "v1")
		var lat harness.Latencies
		for b.Loop() {
			cmd := exec.Command(e2etest.Bin(), "invoke", "-local", dir, "greet")
			cmd.Stdin = strings.NewReader("x")
			t := time.Now()
			out, err := cmd.Output()
			lat.Add(time.Since(t))
			if err != nil || string(out) != "v1:x" {
				b.Fatalf("butter invoke -local: %q, %v", out, err)
			}
		}
		lat.Report(b)
	})
	b.Run("dev-start", func(b *testing.B) {
		dir := benchWriteProject(b, "v1")
		var lat harness.Latencies
		for b.Loop() {
			gw := harness.FreeAddr(b)
			t := time.Now()
			p := benchStart(b, "dev", "-listen", gw, "-server-addr", harness.FreeAddr(b), "-data-dir", b.TempDir(), dir)
			benchUntilAnswer(b, "http://"+gw+"/greet", "v1", time.Minute, p)
			lat.Add(time.Since(t))
			b.StopTimer()
			p.stop()
			b.StartTimer()
		}
		lat.Report(b)
	})
	b.Run("dev-redeploy", func(b *testing.B) {
		dir := benchWriteProject(b, "v0")
		gw := harness.FreeAddr(b)
		p := benchStart(b, "dev", "-listen", gw, "-server-addr", harness.FreeAddr(b), "-data-dir", b.TempDir(), dir)
		benchUntilAnswer(b, "http://"+gw+"/greet", "v0", time.Minute, p)
		var lat harness.Latencies
		version := 0
		for b.Loop() {
			version++
			v := fmt.Sprintf("v%d", version)
			t := time.Now()
			benchWriteGreet(b, dir, v)
			benchUntilAnswer(b, "http://"+gw+"/greet", v, time.Minute, p)
			lat.Add(time.Since(t))
		}
		lat.Report(b)
	})
	b.Run("nomad", benchDeployNomad)
}

// benchDeployNomad runs the nomad variant of BenchmarkDeploy.
func benchDeployNomad(b *testing.B) {
	nomadtest.Binary(b) // skips, or fails under BUTTER_REQUIRE_NOMAD, when missing
	pluginDir := e2etest.PluginDir()
	agent := nomadtest.StartWith(b, nomadtest.Options{
		PluginDir: pluginDir,
		HCL: fmt.Sprintf(`
plugin "nomad-driver-butter" {
  config {
    butter_path = %q
  }
}
`, e2etest.Bin()),
		NodeReady: func(n *api.Node) bool {
			d := n.Drivers["butter"]
			return d != nil && d.Healthy
		},
	})
	serverAddr := harness.FreeAddr(b)
	server := benchStart(b, "server", "-data-dir", b.TempDir(), "-http-addr", serverAddr, "-raft-addr", harness.FreeAddr(b), "-nomad-addr", agent.Addr, "-acl=false")
	benchUntilLeader(b, serverAddr, server)
	gw := harness.FreeAddr(b)
	gateway := benchStart(b, "gateway", "-listen", gw, "-nomad-addr", agent.Addr, "-address", "http://"+serverAddr, "-refresh", "1s")
	dir := benchWriteProject(b, "v0")
	// deploy saves version v of the function and runs `butter deploy`,
	// which returns once Nomad's deployment is healthy; meanwhile the
	// gateway is polled for v's first answer. It returns both times.
	deploy := func(v string) (serving, healthy time.Duration) {
		benchWriteGreet(b, dir, v)
		t := time.Now()
		cmd := exec.Command(e2etest.Bin(), "deploy", "-address", "http://"+serverAddr, "-timeout", "5m", dir)
		var out testlog.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deployed := make(chan error, 1)
		go func() { deployed <- cmd.Wait() }()
		benchUntilAnswer(b, "http://"+gw+"/greet", v, 5*time.Minute, server, gateway)
		serving = time.Since(t)
		if err := <-deployed; err != nil {
			b.Fatalf("butter deploy %s: %v\n%s", v, err, out.String())
		}
		return serving, time.Since(t)
	}
	// The first deploy registers the job and warms the caches (artifact
	// downloads, the Node worker): it is not counted.
	deploy("v0")
	// Per deploy, for docs/capacity.md: the entries the deploy added to
	// the control plane's Raft log (the server's last log index before and
	// after, from its /metrics; the autoscaler's decisions in between
	// count too, and it writes one only when a decision changes) and the
	// Nomad evaluations of the job.
	evals := func() int {
		evs, _, err := agent.Client.Jobs().Evaluations(names.JobID("bench"), nil)
		if err != nil {
			b.Fatalf("the job's evaluations: %v", err)
		}
		return len(evs)
	}
	var lat, healthy harness.Latencies
	var entries, evaluations []float64
	version := 0
	for b.Loop() {
		version++
		b.StopTimer()
		index, evs := benchRaftIndex(b, serverAddr), evals()
		b.StartTimer()
		s, h := deploy(fmt.Sprintf("v%d", version))
		b.StopTimer()
		entries = append(entries, benchRaftIndex(b, serverAddr)-index)
		evaluations = append(evaluations, float64(evals()-evs))
		b.StartTimer()
		lat.Add(s)
		healthy.Add(h)
	}
	lat.Report(b)
	// butter deploy returns once Nomad's deployment is healthy: the new
	// allocation's checks passed for the project's min_healthy_time.
	b.ReportMetric(healthy.Percentile(0.5).Seconds(), "healthy-s")
	b.ReportMetric(harness.Median(entries), "raft-entries/deploy")
	b.ReportMetric(harness.Median(evaluations), "nomad-evals/deploy")
}

// benchRaftIndex reads the last index of the control plane's Raft log
// from its /metrics.
func benchRaftIndex(b *testing.B, addr string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatalf("the server's metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "butter_server_raft_last_log_index "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.Fatalf("butter_server_raft_last_log_index %q: %v", v, err)
			}
			return f
		}
	}
	b.Fatalf("the server's /metrics has no butter_server_raft_last_log_index")
	return 0
}

// benchUntilLeader waits until the control plane at addr has a leader.
func benchUntilLeader(b *testing.B, addr string, server *benchProc) {
	b.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		var out struct{ Leader string }
		if resp, err := c.Get("http://" + addr + "/v1/status/leader"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if out.Leader != "" {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the control plane has no leader after a minute:\n%s", e2etest.Tail(server.out.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
