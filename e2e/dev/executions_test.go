package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testport"
)

const ledgerSpec = `project "ledger" {}

function "tally" {
  runtime = "python"
  source  = "functions/tally"
  handler = "main.handle"
  trigger "http" {
    route = "POST /tally"
  }
  state {
    key = "user"
  }
  secret "API_TOKEN" {
    vault = "kv/data/ledger#token"
  }
  executions {
    redact = ["password"]
  }
}
`

const tallyPy = `import json, os


def handle(event, ctx):
    e = json.loads(event)
    if e["amount"] < 0:
        raise ValueError("negative amount")
    s = ctx.state.get() or {"total": 0}
    s["total"] += e["amount"]
    ctx.state.set(s)
    return {"user": e["user"], "total": s["total"], "token": os.environ["API_TOKEN"]}
`

// TestExecutionsUnderDev: a Python function with state, a secret and an
// executions block under butter dev (its own process, the embedded
// broker): butter executions lists its three calls (one failed), shows
// one whole (input, state before and after, output, duration) with the
// redacted field and the secret's value replaced, and butter invoke
// -local -replay runs that execution again from its recorded input and
// state, giving the recorded output.
func TestExecutionsUnderDev(t *testing.T) {
	const token = "tok-s3cr3t-4242"
	dir := filepath.Join(t.TempDir(), "ledger")
	for name, body := range map[string]string{"ledger.fn.hcl": ledgerSpec, "functions/tally/main.py": tallyPy} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gw := testport.Addr(t)
	cmd := exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir)
	cmd.Env = append(envWithout("API_TOKEN"), "API_TOKEN="+token)
	d := startDev(t, cmd)
	m := regexp.MustCompile(`broker: (127\.0\.0\.1:\d+)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("butter dev printed no broker address:\n%s", d.out.String())
	}
	brokers := m[1]

	for _, c := range []struct {
		id, body string
		code     int
	}{
		{"req-1", `{"user":"ann","amount":5,"password":"hunter2"}`, 200},
		{"req-2", `{"user":"ann","amount":7,"password":"hunter2"}`, 200},
		{"req-3", `{"user":"ann","amount":-1,"password":"hunter2"}`, 500},
	} {
		req, _ := http.NewRequest("POST", "http://"+gw+"/tally", strings.NewReader(c.body))
		req.Header.Set("X-Request-Id", c.id)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end: a client that hangs up once the output has
		// begun cancels the call, and its state is not saved.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Fatalf("%s: %s, want %d", c.id, resp.Status, c.code)
		}
	}

	var list string
	e2etest.WaitFor(t, time.Minute, "three executions listed", func() bool {
		r := e2etest.Butter(t, dir, "executions", "-kafka-brokers", brokers, "ledger/tally")
		list = r.Stdout
		return r.Code == 0 && strings.Count(list, "req-") == 3
	})
	if !regexp.MustCompile(`(?m)^\S+\s+req-3\s+\S+\s+Exception: .*negative amount`).MatchString(list) || !regexp.MustCompile(`(?m)^\S+\s+req-1\s+\S+\s+-$`).MatchString(list) {
		t.Errorf("butter executions should list req-1 ok and req-3 failed:\n%s", list)
	}
	if r := e2etest.Butter(t, dir, "executions", "-kafka-brokers", brokers, "-errors", "ledger/tally"); r.Code != 0 || strings.Contains(r.Stdout, "req-1") || !strings.Contains(r.Stdout, "req-3") {
		t.Errorf("butter executions -errors: %+v", r)
	}

	r := e2etest.Butter(t, dir, "executions", "-kafka-brokers", brokers, "ledger/tally", "req-2")
	if r.Code != 0 {
		t.Fatalf("butter executions ledger/tally req-2: %+v", r)
	}
	if strings.Contains(r.Stdout, "hunter2") || strings.Contains(r.Stdout, token) {
		t.Errorf("the record keeps a redacted field or the secret:\n%s", r.Stdout)
	}
	var e struct {
		Function, Revision, Invocation string
		StateKey                       string `json:"state_key"`
		Input                          map[string]any
		StateBefore                    map[string]any `json:"state_before"`
		StateAfter                     map[string]any `json:"state_after"`
		StateChanged                   bool           `json:"state_changed"`
		Output                         map[string]any
		DurationMS                     float64 `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &e); err != nil {
		t.Fatalf("%v:\n%s", err, r.Stdout)
	}
	if e.Input["password"] != "[redacted]" || e.Input["amount"] != 7.0 || e.StateKey != "ann" ||
		e.StateBefore["total"] != 5.0 || e.StateAfter["total"] != 12.0 || !e.StateChanged ||
		e.Output["total"] != 12.0 || e.Output["token"] != "[redacted]" || e.DurationMS <= 0 {
		t.Errorf("execution req-2: %+v", e)
	}
	if r := e2etest.Butter(t, dir, "executions", "-kafka-brokers", brokers, "ledger/tally", "req-none"); r.Code != 1 || !strings.Contains(r.Stderr, "keeps no execution") {
		t.Errorf("an unknown invocation: %+v", r)
	}

	// Replayed locally: the recorded input against the recorded state.
	file := filepath.Join(t.TempDir(), "exec.json")
	if err := os.WriteFile(file, []byte(r.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := exec.Command(e2etest.Bin(), "invoke", "-local", "-replay", file, dir, "tally")
	rep.Env = append(envWithout("API_TOKEN"), "API_TOKEN="+token)
	res := e2etest.Run(t, rep)
	var out map[string]any
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &out) != nil || out["total"] != 12.0 || !strings.Contains(res.Stderr, "replaying invocation req-2 of tally") {
		t.Errorf("butter invoke -local -replay: %+v", res)
	}
}
