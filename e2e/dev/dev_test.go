// Package dev tests `butter dev` and `make dev` as a user runs them: the
// quick start of the README, hot redeploys under load, auth, queued and
// async routes, timers, and dev secrets kept from a function's neighbours.
package dev

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// devProc is a running `butter dev` (or `make dev`) in its own process
// group, so an interrupt reaches every process of it, as Ctrl-C does.
type devProc struct {
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan error
}

func startDev(t *testing.T, cmd *exec.Cmd) *devProc {
	t.Helper()
	d := &devProc{cmd: cmd, out: &testlog.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("butter dev output (tail):\n%s", e2etest.Tail(d.out.String(), 6000))
		}
	})
	e2etest.WaitFor(t, 3*time.Minute, "the ready line", func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("butter dev exited before it was ready: %v\n%s", err, d.out.String())
		default:
		}
		return strings.Contains(d.out.String(), "butter dev ready")
	})
	return d
}

// interrupt sends SIGINT to the process group and waits for a clean exit.
func (d *devProc) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatal("butter dev did not stop within 60s of Ctrl-C")
	}
	if !strings.Contains(d.out.String(), "==> stopping") {
		t.Errorf("butter dev did not report stopping")
	}
}

// TestQuickStart runs `make dev` as the README says, runs the curl it
// prints, and checks the answer; then Ctrl-C stops everything.
func TestQuickStart(t *testing.T) {
	root := e2etest.Root()
	flags := fmt.Sprintf("DEV_FLAGS=-listen %s -server-addr %s", testport.Addr(t), testport.Addr(t))
	cmd := exec.Command("make", "--no-print-directory", "dev", flags)
	cmd.Dir = root
	d := startDev(t, cmd)
	m := regexp.MustCompile(`(?m)^\s*try: (curl .*)$`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("make dev printed no curl to try:\n%s", d.out.String())
	}
	curl := exec.Command("sh", "-c", m[1])
	out, err := curl.Output()
	if err != nil {
		t.Fatalf("%s: %v", m[1], err)
	}
	data := regexp.MustCompile(`--data-binary '([^']*)'`).FindStringSubmatch(m[1])
	if data == nil || string(out) != data[1] {
		t.Fatalf("%s answered %q; the echo should answer the body it was sent", m[1], out)
	}
	t.Logf("%s → %s", m[1], out)
	d.interrupt(t)
}

const devProject = `project "live" {}

function "greet" {
  runtime = "node"
  source  = "functions/greet"
  handler = "index.handle"
  timeout = "5s"
  trigger "http" {
    route = "POST /greet"
  }
  instances {
    max         = 8
    concurrency = 16
  }
}

function "secure" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /secure"
    auth  = "api_key"
  }
}

function "later" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  trigger "http" {
    route = "POST /queued"
    mode  = "queued"
  }
  trigger "http" {
    route = "POST /async"
    mode  = "async"
  }
}

function "tick" {
  runtime = "exec"
  command = ["sh", "-c", "cat >> %s; echo >> %s"]
  trigger "cron" {
    schedule = "* * * * * *"
  }
}
`

func writeDevProject(t *testing.T, version string) (dir, ticks string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "live")
	ticks = filepath.Join(t.TempDir(), "ticks.txt")
	if err := os.MkdirAll(filepath.Join(dir, "functions", "greet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "live.fn.hcl"), []byte(fmt.Sprintf(devProject, ticks, ticks)), 0o644); err != nil {
		t.Fatal(err)
	}
	writeGreet(t, dir, version)
	return dir, ticks
}

func writeGreet(t *testing.T, dir, version string) {
	t.Helper()
	src := fmt.Sprintf("exports.handle = async (input) => Buffer.concat([Buffer.from(%q), Buffer.from(input)]);\n", version+":")
	// Write then rename, as editors do, so the watcher never sees half a file.
	tmp := filepath.Join(dir, "functions", "greet", ".index.js.tmp")
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "functions", "greet", "index.js")); err != nil {
		t.Fatal(err)
	}
}

// TestDevHotRedeploy: 50 concurrent clients run for 20 seconds while the
// function is edited; butter dev redeploys it with zero failed requests,
// and the answers switch to the new revision.
func TestDevHotRedeploy(t *testing.T) {
	dir, _ := writeDevProject(t, "v1")
	gw := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	url := "http://" + gw + "/greet"

	// The load runs until every client has had an answer from the new
	// revision, however long the redeploy takes, not for a fixed time.
	var ok, failed, v2 atomic.Int64
	var failures sync.Map
	const clients = 50
	var last [clients]atomic.Pointer[string]
	var stopped atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; !stopped.Load(); n++ {
				body := fmt.Sprintf("client %d call %d", i, n)
				resp, err := client.Post(url, "text/plain", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got := string(b)
				if resp.StatusCode != 200 || (got != "v1:"+body && got != "v2:"+body) {
					failed.Add(1)
					failures.Store(fmt.Sprintf("%d %s", resp.StatusCode, got), true)
					continue
				}
				ok.Add(1)
				if strings.HasPrefix(got, "v2:") {
					v2.Add(1)
				}
				version := got[:2]
				last[i].Store(&version)
			}
		}(i)
	}
	defer func() { stopped.Store(true); wg.Wait() }()
	e2etest.WaitFor(t, 60*time.Second, "v1 answers flowing", func() bool { return ok.Load() > 100 })
	writeGreet(t, dir, "v2")
	e2etest.WaitFor(t, 60*time.Second, "the redeploy", func() bool {
		return strings.Contains(d.out.String(), "serving (deployed in")
	})
	e2etest.WaitFor(t, 60*time.Second, "every client answered by the new revision", func() bool {
		for i := range last {
			if v := last[i].Load(); v == nil || *v != "v2" {
				return false
			}
		}
		return true
	})
	stopped.Store(true)
	wg.Wait()
	t.Logf("%d answers, %d from the new revision, %d failed", ok.Load(), v2.Load(), failed.Load())
	failures.Range(func(k, _ any) bool { t.Logf("failure: %v", k); return true })
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the redeploy", failed.Load())
	}
	if v2.Load() == 0 {
		t.Fatal("no answer came from the new revision")
	}
	for i := range last {
		if v := last[i].Load(); v == nil || *v != "v2" {
			t.Errorf("client %d's last answer did not come from the new revision", i)
		}
	}

	// An invalid edit is reported and the running revision keeps serving.
	if err := os.WriteFile(filepath.Join(dir, "live.fn.hcl"), []byte("function \"greet\" {\n  runtime = \"cobol\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, 60*time.Second, "the invalid change reported", func() bool {
		return strings.Contains(d.out.String(), "the running revision keeps serving")
	})
	resp, err := client.Post(url, "text/plain", strings.NewReader("still"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "v2:still" {
		t.Errorf("after an invalid edit: %d %q, want the running revision's answer", resp.StatusCode, b)
	}
	d.interrupt(t)
}

// TestDevAuthAndTimers: an api_key route answers 401 without a key or with
// a wrong one and 200 with the dev key; a per-second cron trigger fires
// from the control plane's leader through the embedded broker into the
// function.
func TestDevAuthAndTimers(t *testing.T) {
	dir, ticks := writeDevProject(t, "v1")
	gw := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), "-api-key", "s3cret", dir))
	call := func(key string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+gw+"/secure", strings.NewReader("payload"))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(""); code != 401 {
		t.Errorf("no key: %d %s, want 401", code, body)
	}
	if code, body := call("wrong"); code != 401 {
		t.Errorf("wrong key: %d %s, want 401", code, body)
	}
	if code, body := call("s3cret"); code != 200 || body != "payload" {
		t.Errorf("right key: %d %s, want 200 payload", code, body)
	}
	// Queued: through Kafka to the function's request topic and back.
	resp, err := http.Post("http://"+gw+"/queued", "text/plain", strings.NewReader("through kafka"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "THROUGH KAFKA" {
		t.Errorf("queued: %d %q, want 200 THROUGH KAFKA", resp.StatusCode, b)
	}
	// Async: 202 with a Location to poll until the answer is there.
	resp, err = http.Post("http://"+gw+"/async", "text/plain", strings.NewReader("later"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || loc == "" {
		t.Fatalf("async: %d, Location %q; want 202 and a Location", resp.StatusCode, loc)
	}
	e2etest.WaitFor(t, 30*time.Second, "the async invocation's result", func() bool {
		r, err := http.Get("http://" + gw + loc)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode == 200 && string(b) == "LATER"
	})
	e2etest.WaitFor(t, 30*time.Second, "three ticks delivered to the cron function", func() bool {
		b, _ := os.ReadFile(ticks)
		return strings.Count(string(b), `"tick":`) >= 3
	})
	b, _ = os.ReadFile(ticks)
	t.Logf("ticks:\n%s", b)
	if !strings.Contains(string(b), `"timer":"live.tick.0"`) {
		t.Errorf("ticks should name their timer: %s", b)
	}
	d.interrupt(t)
}
