package dev

import (
	"bufio"
	"context"
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

const logsProject = `project "chatty" {}

function "talk" {
  runtime = "node"
  source  = "functions/talk"
  handler = "index.handle"
  trigger "http" {
    route = "POST /talk"
  }
}

function "say" {
  runtime = "python"
  source  = "functions/say"
  handler = "main.handle"
  trigger "http" {
    route = "POST /say"
  }
}
`

const talkJS = `exports.handle = async (input, ctx) => {
  console.log('talk got ' + input.toString());
  ctx.log('warn', 'talk warns about ' + input.toString());
  return 'ok';
};
`

const sayPy = `def handle(event, ctx):
    print("say got " + event.decode())
    return "ok"
`

// TestLogsUnderDev: what a Node and a Python function print (console.log,
// print) and log (ctx.log) under butter dev reaches the project's log
// topic on the embedded broker, each line with its function, revision,
// invocation (the call's X-Request-Id) and trace; butter logs prints a
// project's, a function's and one invocation's lines, as text and as
// JSON, and -f follows new ones.
func TestLogsUnderDev(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"chatty.fn.hcl": logsProject, "functions/talk/index.js": talkJS, "functions/say/main.py": sayPy}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gw := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	m := regexp.MustCompile(`broker: (127\.0\.0\.1:\d+)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("butter dev printed no broker address:\n%s", d.out.String())
	}
	brokers := m[1]

	call := func(path, id, body, traceparent string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+gw+path, strings.NewReader(body))
		req.Header.Set("X-Request-Id", id)
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	call("/talk", "req-talk-1", "one", "00-"+traceID+"-00f067aa0ba902b7-01")
	call("/talk", "req-talk-2", "two", "")
	call("/say", "req-say-1", "three", "")

	logs := func(args ...string) string {
		t.Helper()
		r := e2etest.Butter(t, dir, append([]string{"logs", "-kafka-brokers", brokers}, args...)...)
		if r.Code != 0 {
			t.Fatalf("butter logs %v: %+v", args, r)
		}
		return r.Stdout
	}
	// The lines are produced without waiting: poll until all are there.
	var all string
	e2etest.WaitFor(t, time.Minute, "the five lines in the log topic", func() bool {
		all = logs("chatty")
		return strings.Count(all, "\n") >= 5
	})
	if n := strings.Count(all, "\n"); n != 5 {
		t.Errorf("butter logs chatty printed %d lines, want 5:\n%s", n, all)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\S+ \[INFO\]  talk: talk got one  invocation=req-talk-1 trace_id=` + traceID + `$`),
		regexp.MustCompile(`(?m)^\S+ \[WARN\]  talk: talk warns about one  invocation=req-talk-1 trace_id=` + traceID + `$`),
		regexp.MustCompile(`(?m)^\S+ \[INFO\]  talk: talk got two  invocation=req-talk-2 trace_id=[0-9a-f]{32}$`),
		regexp.MustCompile(`(?m)^\S+ \[INFO\]  say: say got three  invocation=req-say-1 trace_id=[0-9a-f]{32}$`),
	} {
		if !want.MatchString(all) {
			t.Errorf("butter logs chatty has no line matching %s:\n%s", want, all)
		}
	}
	if got := logs("chatty/say"); strings.Contains(got, "talk") || !strings.Contains(got, "say got three") {
		t.Errorf("butter logs chatty/say:\n%s", got)
	}
	if got := logs("-invocation", "req-talk-2", "chatty"); strings.Count(got, "\n") != 2 || !strings.Contains(got, "talk got two") || !strings.Contains(got, "talk warns about two") {
		t.Errorf("butter logs -invocation req-talk-2 should print its two lines:\n%s", got)
	}
	// As JSON: the record, revision and stream included.
	var rec struct{ Function, Revision, Stream, Invocation, TraceID, Level, Message string }
	line := strings.TrimSpace(logs("-json", "-invocation", "req-say-1", "chatty"))
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Function != "say" || rec.Revision == "" || rec.Stream != "stdout" || rec.Message != "say got three" {
		t.Errorf("butter logs -json: %q → %+v, %v", line, rec, err)
	}
	if got := logs("-since", "1h", "chatty/say"); !strings.Contains(got, "say got three") {
		t.Errorf("butter logs -since 1h misses the line:\n%s", got)
	}
	if got := logs("-since", time.Now().Add(time.Hour).Format(time.RFC3339), "chatty"); got != "" {
		t.Errorf("butter logs -since <an hour ahead> should print nothing:\n%s", got)
	}

	// -f prints a line printed after it started.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := exec.CommandContext(ctx, e2etest.Bin(), "logs", "-kafka-brokers", brokers, "-f", "-since", "1s", "-invocation", "req-talk-3", "chatty/talk")
	stdout, _ := f.StdoutPipe()
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = f.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	call("/talk", "req-talk-3", "four", "")
	select {
	case l, ok := <-lines:
		// Its printed line or its ctx.log line: they come by different
		// paths, in either order.
		if !ok || !strings.Contains(l, "invocation=req-talk-3") || !strings.Contains(l, "four") {
			t.Errorf("butter logs -f printed %q (open: %v), want the line of req-talk-3", l, ok)
		}
	case <-ctx.Done():
		t.Fatal("butter logs -f printed nothing within 2 minutes")
	}
}
