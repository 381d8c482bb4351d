package dev_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testport"
)

// TestCallUnderDev: the spec's calls list, end to end under butter dev on
// the embedded broker: a Node function behind a route calls a Python
// function that has no trigger of its own (its pool consumes its request
// topic because it is called) and gets its reply, or its typed refusal.
func TestCallUnderDev(t *testing.T) {
	dir := project(t, `project "cl" {}

function "front" {
  runtime = "node"
  source  = "front"
  calls   = [function.score]

  trigger "http" {
    route = "POST /front"
  }
}

function "score" {
  runtime = "python"
  source  = "score"
}
`)
	files := map[string]string{
		"front/index.js": `exports.handle = async (input, ctx) => {
  try {
    return 'score says ' + (await ctx.call('score', input, 20000)).toString();
  } catch (err) {
    return 'error ' + err.type + ': ' + err.reason;
  }
};
`,
		"score/main.py": `import butter


def handle(data, ctx):
    if data == b"bad":
        raise butter.PreconditionFailed("bad input")
    return str(len(data))
`,
	}
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	listen := testport.Addr(t)
	runDev(t, dev.Config{Dir: dir, Listen: listen})
	post := func(body string) string {
		t.Helper()
		resp, err := http.Post("http://"+listen+"/front", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST /front %q: %s %s", body, resp.Status, b)
		}
		return string(b)
	}
	if got := post("hello"); got != "score says 5" {
		t.Errorf("POST /front hello: %q, want %q", got, "score says 5")
	}
	if got := post("bad"); got != "error PreconditionFailed: bad input" {
		t.Errorf("POST /front bad: %q, want the callee's PreconditionFailed", got)
	}
}
