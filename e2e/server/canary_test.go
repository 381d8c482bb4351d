package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/nomad/api"
)

const canaryProject = `project "cn" {
  deploy {
    min_healthy_time = "1s"
    healthy_deadline = "40s"
  }
}

function "v" {
  runtime = "node"
  source  = "fn"
  handler = "index.v"
  timeout = "10s"
  trigger "http" {
    route = "POST /v"
  }
}
`

// TestCanaryOnNomad is a canary with every part in its own process: a
// real Nomad agent with the butter driver, `butter server`, `butter
// gateway`. A manual canary at 50% runs the new revision's allocation
// beside the serving one (Nomad's canary deployment), the gateway splits
// the calls between them and pins them by header, and `butter canary
// promote` makes Nomad replace the old allocation. An automated canary
// whose revision fails its calls is judged over budget at its first step
// and aborted: its allocation stops and the serving revision answers
// every call, as before.
func TestCanaryOnNomad(t *testing.T) {
	agent := nomadtest.StartWith(t, nomadtest.Options{
		PluginDir: e2etest.PluginDir(),
		HCL:       fmt.Sprintf("plugin \"nomad-driver-butter\" {\n  config {\n    butter_path = %q\n  }\n}\n", e2etest.Bin()),
		NodeReady: func(n *api.Node) bool { d := n.Drivers["butter"]; return d != nil && d.Healthy },
	})
	s := e2etest.StartServer(t, "-nomad-addr", agent.Addr)
	addr := "http://" + s.HTTP
	gwAddr := testport.Addr(t)
	gwOut := &testlog.Buffer{}
	gw := exec.Command(e2etest.Bin(), "gateway", "-listen", gwAddr, "-nomad-addr", agent.Addr, "-address", addr, "-refresh", "200ms")
	gw.Stdout, gw.Stderr = gwOut, gwOut
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		if t.Failed() {
			t.Logf("gateway output (tail):\n%s", e2etest.Tail(gwOut.String(), 4000))
			nomadtest.LogTasks(t, agent.Client, "butter-cn", 3000)
		}
	})

	dir := filepath.Join(t.TempDir(), "cn")
	write := func(name, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cn.fn.hcl", canaryProject)
	write("fn/index.js", "exports.v = async () => 'v1';\n")
	r := e2etest.Butter(t, ".", "deploy", "-address", addr, "-timeout", "4m", dir)
	v1 := revisionIn(r.Stdout)
	if r.Code != 0 || v1 == "" {
		t.Fatalf("deploy v1: %+v", r)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	type answer struct {
		code     int
		body     string
		revision string
	}
	call := func(hdr string) answer {
		req, _ := http.NewRequest("POST", "http://"+gwAddr+"/v", strings.NewReader("x"))
		if hdr != "" {
			req.Header.Set("Butter-Revision", hdr)
		}
		resp, err := client.Do(req)
		if err != nil {
			return answer{body: err.Error()}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(bytes.TrimSpace(b)), resp.Header.Get("Butter-Revision")}
	}
	// only waits until n calls in a row are answered by want alone.
	only := func(want string, n int) {
		t.Helper()
		e2etest.WaitFor(t, 2*time.Minute, "every call answered "+want, func() bool {
			for range n {
				if a := call(""); a.code != 200 || a.body != want {
					return false
				}
			}
			return true
		})
	}
	only("v1", 5)

	// A manual canary at 50%.
	write("fn/index.js", "exports.v = async () => 'v2';\n")
	r = e2etest.Butter(t, ".", "deploy", "-address", addr, "-timeout", "4m", "-canary", "50%", dir)
	t.Logf("canary deploy output:\n%s\n%s", r.Stdout, r.Stderr)
	v2 := revisionIn(r.Stdout)
	if r.Code != 0 || v2 == "" || v2 == v1 || !strings.Contains(r.Stdout, "The canary runs: 50% of the calls go to revision "+v2) {
		t.Fatalf("deploy -canary 50%%: %+v", r)
	}
	allocs := func() map[string]int { // running allocations by the revision of their job version
		out := map[string]int{}
		list, _, err := agent.Client.Jobs().Allocations("butter-cn", false, nil)
		if err != nil {
			return out
		}
		versions, _, _, err := agent.Client.Jobs().Versions("butter-cn", false, nil)
		if err != nil {
			return out
		}
		rev := map[uint64]string{}
		for _, j := range versions {
			rev[*j.Version] = j.Meta["butter_revision"]
		}
		for _, a := range list {
			if a.ClientStatus == "running" {
				out[rev[a.JobVersion]]++
			}
		}
		return out
	}
	if got := allocs(); got[v1] != 1 || got[v2] != 1 {
		t.Fatalf("during the canary Nomad runs %v, want one allocation of each revision", got)
	}
	// The gateway takes the split within its refresh.
	seen := map[string]int{}
	e2etest.WaitFor(t, time.Minute, "calls answered by both revisions", func() bool {
		a := call("")
		if a.code == 200 && a.revision != "" { // "": before the gateway's next refresh
			seen[a.body]++
			if want := map[string]string{"v1": v1, "v2": v2}[a.body]; a.revision != want {
				t.Fatalf("answer %q came with Butter-Revision %q, want %q", a.body, a.revision, want)
			}
		}
		return seen["v1"] >= 3 && seen["v2"] >= 3
	})
	for range 10 {
		if a := call("canary"); a.code != 200 || a.body != "v2" {
			t.Fatalf("a call pinned to the canary answered %d %q", a.code, a.body)
		}
		if a := call("stable"); a.code != 200 || a.body != "v1" {
			t.Fatalf("a call pinned to the stable revision answered %d %q", a.code, a.body)
		}
	}
	r = e2etest.Butter(t, ".", "status", "-address", addr, "cn")
	if !strings.Contains(r.Stdout, "Canary     revision "+v2+" beside stable "+v1+" (manual; in progress)") || !strings.Contains(r.Stdout, "running, 50% of calls") {
		t.Errorf("status during the canary:\n%s", r.Stdout)
	}

	r = e2etest.Butter(t, ".", "canary", "promote", "-address", addr, "cn")
	t.Logf("promote output:\n%s\n%s", r.Stdout, r.Stderr)
	if r.Code != 0 || !strings.Contains(r.Stdout, "is healthy") {
		t.Fatalf("canary promote: %+v", r)
	}
	only("v2", 10)
	e2etest.WaitFor(t, time.Minute, "revision v1's allocation stopped", func() bool {
		got := allocs()
		return got[v1] == 0 && got[v2] == 1
	})
	r = e2etest.Butter(t, ".", "status", "-address", addr, "cn")
	if !strings.Contains(r.Stdout, "promoted, 100% of calls") {
		t.Errorf("status after the promotion:\n%s", r.Stdout)
	}

	// An automated canary whose revision fails every call: aborted at
	// its first step. Calls run through the gateway meanwhile.
	write("fn/index.js", "exports.v = async () => { throw new Error('v3 is broken'); };\n")
	// Calls go on until the canary's allocation has stopped; those that
	// start well after the deploy returned (past a few of the gateway's
	// refreshes) must all reach the stable revision, though the canary's
	// allocation still runs for a while (the drain).
	var stop atomic.Bool
	var returned atomic.Int64 // unix nanoseconds, once the deploy returned
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	var lateFailures []string
	late := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			at := time.Now()
			a := call("")
			mu.Lock()
			answers[fmt.Sprintf("%d %s", a.code, a.revision)]++
			if ret := returned.Load(); ret != 0 && at.Sub(time.Unix(0, ret)) > 3*time.Second {
				late++
				if a.code != 200 || a.body != "v2" {
					lateFailures = append(lateFailures, fmt.Sprintf("%d %q (%s)", a.code, a.body, a.revision))
				}
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	r = e2etest.Butter(t, ".", "deploy", "-address", addr, "-timeout", "4m", "-canary", "20%,100%", "-canary-interval", "3s", "-canary-min-requests", "5", dir)
	returned.Store(time.Now().UnixNano())
	t.Logf("automated canary output:\n%s\n%s", r.Stdout, r.Stderr)
	v3 := revisionIn(r.Stdout)
	if r.Code != 1 || v3 == "" || v3 == v2 {
		t.Fatalf("the failing canary's deploy should exit 1: %+v", r)
	}
	if !strings.Contains(r.Stdout, "step 20%: fail:") || !strings.Contains(r.Stderr, "ended aborted") || !strings.Contains(r.Stderr, "Revision "+v2+" serves project") {
		t.Errorf("the deploy should print the failed step and the abort")
	}

	e2etest.WaitFor(t, 2*time.Minute, "v2 active and healthy again", func() bool {
		r := e2etest.Butter(t, ".", "status", "-address", addr, "cn")
		return strings.Contains(r.Stdout, "Active     "+v2) && strings.Contains(r.Stdout, "Status     healthy") && strings.Contains(r.Stdout, "aborted, 20% of calls")
	})
	e2etest.WaitFor(t, time.Minute, "the canary's allocation stopped", func() bool {
		got := allocs()
		return got[v3] == 0 && got[v2] == 1
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("answers during the canary and its drain: %v; %d calls started 3s after the deploy returned", answers, late)
	if answers[fmt.Sprintf("500 %s", v3)]+answers[fmt.Sprintf("502 %s", v3)] == 0 {
		t.Errorf("no failing call reached the canary: %v", answers)
	}
	// A failure is the canary's, in its share only: none while its
	// allocation started, none while it drained.
	for k, n := range answers {
		if !strings.HasPrefix(k, "200 ") && k != "500 "+v3 {
			t.Errorf("%d calls answered %q: only calls drawn for the running canary may fail (%v)", n, k, answers)
		}
	}
	if len(lateFailures) > 0 {
		t.Errorf("calls after the abort failed (the canary's allocation was not drained): %v", lateFailures)
	}
	only("v2", 10)

	// An automated canary within budget: judged at 20%, then promoted.
	write("fn/index.js", "exports.v = async () => 'v4';\n")
	stop.Store(false)
	clear(answers)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			a := call("")
			mu.Lock()
			answers[fmt.Sprintf("%d %s", a.code, a.body)]++
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	r = e2etest.Butter(t, ".", "deploy", "-address", addr, "-timeout", "4m", "-canary", "20%,100%", "-canary-interval", "3s", "-canary-min-requests", "5", dir)
	stop.Store(true)
	wg.Wait()
	t.Logf("automated promotion output:\n%s\n%s\nanswers during it: %v", r.Stdout, r.Stderr, answers)
	v4 := revisionIn(r.Stdout)
	if r.Code != 0 || v4 == "" || !strings.Contains(r.Stdout, "step 20%: pass:") || !strings.Contains(r.Stdout, "Revision "+v4+" of project \"cn\" is promoted") {
		t.Fatalf("the automated canary within budget should pass its step and be promoted: %+v", r)
	}
	for k, n := range answers {
		if k != "200 v2" && k != "200 v4" {
			t.Errorf("%d calls answered %q during the automated promotion", n, k)
		}
	}
	only("v4", 10)
	e2etest.WaitFor(t, time.Minute, "revision v2's allocation stopped", func() bool {
		got := allocs()
		return got[v2] == 0 && got[v4] == 1
	})
}
