package dev_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// waitFor polls cond every 20ms until it holds, failing the test with
// the developer's output after d.
func waitFor(t *testing.T, ui *lines, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; butter dev said:\n%s", what, d, ui.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// writeHandler writes the Python handler main.py of the project in dir.
func writeHandler(t *testing.T, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "hello", "main.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

const loadSpec = `project "loads" {}

function "hello" {
  runtime = "python"
  source  = "hello"
  handler = "main.handle"

  trigger "http" {
    route = "POST /hello"
  }
}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]

  trigger "http" {
    route = "POST /upper"
  }
}
`

// TestRedeployThatDoesNotLoad (issue 22 item 12): a change whose Python
// handler imports a module that is not installed (min = 0, so no instance
// would start before a call) is not switched to: butter dev names the
// function and prints the worker's error, and the running revision keeps
// answering. Fixing the handler deploys it.
func TestRedeployThatDoesNotLoad(t *testing.T) {
	dir := project(t, loadSpec)
	if err := os.Mkdir(filepath.Join(dir, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeHandler(t, dir, "def handle(data, ctx):\n    return b'v1:' + data\n")
	listen := testport.Addr(t)
	ui := runDev(t, dev.Config{Dir: dir, Listen: listen}).ui
	url := "http://" + listen + "/hello"
	if code, body := post(t, url, "a"); code != 200 || body != "v1:a" {
		t.Fatalf("v1: %d %q", code, body)
	}

	writeHandler(t, dir, "import humanize\n\ndef handle(data, ctx):\n    return b'v2:' + data\n")
	waitFor(t, ui, time.Minute, "the failed load reported", func() bool { return strings.Contains(ui.text(), "does not load") })
	out := ui.text()
	for _, want := range []string{"the change does not load (hello); revision ", " keeps serving", "function hello: ", "ModuleNotFoundError: No module named 'humanize'"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "serving (deployed in") != 0 {
		t.Errorf("the revision that does not load was reported serving:\n%s", out)
	}
	if code, body := post(t, url, "b"); code != 200 || body != "v1:b" {
		t.Errorf("after the failed change: %d %q, want the running revision's v1:b", code, body)
	}

	writeHandler(t, dir, "def handle(data, ctx):\n    return b'v3:' + data\n")
	waitFor(t, ui, time.Minute, "the fix deployed", func() bool { return strings.Contains(ui.text(), "serving (deployed in") })
	if code, body := post(t, url, "c"); code != 200 || body != "v3:c" {
		t.Errorf("after the fix: %d %q, want v3:c", code, body)
	}
}

// TestFirstRevisionWithAFunctionThatCannotStart (issue 22 item 2): with
// no revision to keep, butter dev serves the project, names the function
// that cannot start with its error, answers its calls 503, and serves the
// other function; a change to that other function deploys although the
// broken one still fails, and fixing the broken one deploys it.
func TestFirstRevisionWithAFunctionThatCannotStart(t *testing.T) {
	dir := project(t, loadSpec)
	if err := os.Mkdir(filepath.Join(dir, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeHandler(t, dir, "import humanize\n\ndef handle(data, ctx):\n    return data\n")
	listen := testport.Addr(t)
	ui := runDev(t, dev.Config{Dir: dir, Listen: listen}).ui
	out := ui.text()
	for _, want := range []string{"some functions cannot start", "function hello: ", "No module named 'humanize'"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if code, body := post(t, "http://"+listen+"/upper", "shout"); code != 200 || body != "SHOUT" {
		t.Errorf("the other function: %d %q, want SHOUT", code, body)
	}
	if code, body := post(t, "http://"+listen+"/hello", "x"); code != http.StatusServiceUnavailable || !strings.Contains(body, "No module named 'humanize'") || strings.Contains(body, "Traceback") {
		t.Errorf("the failed function: %d %q, want 503 naming the missing module, without the traceback", code, body)
	}

	// A change to the other function deploys: hello failed already, so
	// it breaks nothing more.
	if err := os.WriteFile(filepath.Join(dir, "p.fn.hcl"), []byte(strings.Replace(loadSpec, `["tr", "a-z", "A-Z"]`, `["cat"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ui, time.Minute, "the change to upper deployed", func() bool { return strings.Contains(ui.text(), "serving (deployed in") })
	if code, body := post(t, "http://"+listen+"/upper", "shout"); code != 200 || body != "shout" {
		t.Errorf("after the change to upper: %d %q, want shout", code, body)
	}
	// Fixing hello deploys it.
	writeHandler(t, dir, "def handle(data, ctx):\n    return b'fixed:' + data\n")
	waitFor(t, ui, time.Minute, "the fix deployed", func() bool { return strings.Count(ui.text(), "serving (deployed in") == 2 })
	if code, body := post(t, "http://"+listen+"/hello", "x"); code != 200 || body != "fixed:x" {
		t.Errorf("after the fix: %d %q, want fixed:x\n%s", code, body, ui.text())
	}
}
