package dev_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/dev"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/go-hclog"
)

// TestErrorsUnderDev: under butter dev, a Python and a Node handler that
// throw answer the HTTP caller, through the gateway, with the error's
// type, one line of message and the request id, and nothing of the
// traceback or the project's paths; the terminal shows the traceback in
// the pool's log entry carrying that request id.
func TestErrorsUnderDev(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"p.fn.hcl": `project "errs" {}

function "py" {
  runtime = "python"
  source  = "py"
  handler = "main.handle"
  trigger "http" {
    route = "POST /py"
  }
}

function "js" {
  runtime = "node"
  source  = "js"
  handler = "index.handle"
  trigger "http" {
    route = "POST /js"
  }
}
`,
		"py/main.py":  "def handle(data, ctx):\n    raise ValueError(\"no good: \" + __file__)\n",
		"js/index.js": "exports.handle = async () => { throw new Error('no good: ' + __filename); };\n",
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	term := &testlog.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "dev", Output: term, Level: hclog.Info})
	listen := testport.Addr(t)
	runDev(t, dev.Config{Dir: dir, Listen: listen, Logger: logger})
	for _, c := range []struct{ route, id, trace string }{
		{"/py", "req-py-1", "Traceback (most recent call last)"},
		{"/js", "req-js-1", "    at "},
	} {
		req, _ := http.NewRequest("POST", "http://"+listen+c.route, strings.NewReader("x"))
		req.Header.Set("X-Request-Id", c.id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Error     string `json:"error"`
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != 500 || body.Type != "Exception" || body.RequestID != c.id ||
			!strings.HasPrefix(body.Error, "no good: .../") {
			t.Errorf("POST %s: %d %s; want 500, an Exception, the message without its path and request id %s", c.route, resp.StatusCode, b, c.id)
		}
		for _, bad := range []string{"Traceback", "    at ", dir} {
			if strings.Contains(string(b), bad) {
				t.Errorf("POST %s: the answer holds %q: %s", c.route, bad, b)
			}
		}
		// The pool logs the failure before it answers.
		logged := term.String()
		i := strings.Index(logged, "request_id="+c.id)
		if i < 0 || !strings.Contains(logged[i:], c.trace) || !strings.Contains(logged[i:], dir) {
			t.Errorf("POST %s: the terminal lacks the traceback with request id %s:\n%s", c.route, c.id, logged)
		}
	}
}
