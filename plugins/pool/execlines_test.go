package pool_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/go-hclog"
)

// linesScript is a lines-mode exec function: a shell loop answering each
// line with its own pid and the line, exiting on "exit", sleeping on
// "sleep", and logging "warn" lines to stderr.
const linesScript = `while IFS= read -r line; do
  case "$line" in
    exit) echo "bye" >&2; exit 4 ;;
    sleep) sleep 30 ;;
    warn*) echo "[WARN] marker-lines $line" >&2 ;;
  esac
  printf '%s:%s\n' "$$" "$line"
done`

// TestExecLines runs exec functions with mode = "lines" (one process per
// instance, a line per call) in a pool: HTTP calls are answered by one
// long-running process (the same pid each time) with the line it writes;
// a trailing newline of the input is dropped and an input of two lines
// is a PreconditionFailed that reaches no process; a process that exits
// fails its call as InstanceFailed, and the next call gets a new process;
// a call past its deadline is a Timeout, its process killed and
// replaced; stderr lines reach the pool's log with their level; 200
// events of a stream go through one process in order to the output topic,
// in batches (their lines written at once), a two-line event amid them
// dead-lettered as PreconditionFailed.
func TestExecLines(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "lines.in", Partitions: 1}, broker.Topic{Name: "lines.out", Partitions: 1})
	logs := &testlog.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace, JSONFormat: true})
	httpfn := fn("lines", "exec", "sh", "-c", linesScript)
	httpfn.ExecMode, httpfn.MaxInstances, httpfn.Timeout = "lines", 1, "2s"
	streamfn := streamFn("linesstream", "first", "lines.in", "lines.out", "sh", "-c", linesScript)
	streamfn.ExecMode, streamfn.MaxInstances = "lines", 1
	for _, f := range []*pool.FunctionConfig{&httpfn, &streamfn} {
		f.Bundle = t.TempDir()
	}
	p, srv := startLogged(t, "lines", []pool.FunctionConfig{httpfn, streamfn}, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	call := func(in string) answer {
		t.Helper()
		return invoke(t, srv, "lines", strings.NewReader(in), nil)
	}
	pidOf := func(a answer, line string) string {
		t.Helper()
		pid, got, ok := strings.Cut(a.body, ":")
		if a.code != 200 || !ok || got != line {
			t.Fatalf("call %q: %d %q, want 200 <pid>:%s", line, a.code, a.body, line)
		}
		return pid
	}
	first := pidOf(call("a"), "a")
	if second := pidOf(call("b\n"), "b"); second != first {
		t.Errorf("two calls ran in processes %s and %s: lines mode keeps one", first, second)
	}
	if a := call("x\ny"); a.code/100 != 4 || a.errType != "PreconditionFailed" || !strings.Contains(a.body, "has 2") {
		t.Errorf("a two-line input: %d %s %q, want a 4xx PreconditionFailed", a.code, a.errType, a.body)
	}
	if pid := pidOf(call("c"), "c"); pid != first {
		t.Errorf("the refused input replaced the process (%s, then %s)", first, pid)
	}
	pidOf(call("warn me"), "warn me")

	if a := call("exit"); a.code == 200 || a.errType != "InstanceFailed" || !strings.Contains(a.body, "exited with exit status 4") {
		t.Errorf("a call whose process exits: %d %s %q, want InstanceFailed naming the exit", a.code, a.errType, a.body)
	}
	var after string
	eventually(t, 20*time.Second, "a new process after the exit", func() bool {
		a := call("d")
		if a.code != 200 {
			return false
		}
		after = pidOf(a, "d")
		return true
	})
	if after == first {
		t.Errorf("the process that exited still answers (pid %s)", after)
	}
	if a := call("sleep"); a.errType != "Timeout" {
		t.Errorf("a call past its deadline: %d %s %q, want Timeout", a.code, a.errType, a.body)
	}
	eventually(t, 20*time.Second, "a new process after the timeout", func() bool {
		a := call("e")
		return a.code == 200 && !strings.HasPrefix(a.body, after+":")
	})
	eventually(t, 10*time.Second, "the warn line in the log at its level", func() bool {
		return strings.Contains(logs.String(), `"@level":"warn"`) && strings.Contains(logs.String(), "marker-lines warn me")
	})

	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	want := events("ev", 0, 200)
	// A two-line event amid them: dead-lettered, the others go on.
	produce(t, cl, "lines.in", append(append(append([]string{}, want[:100]...), "bad\nline"), want[100:]...)...)
	got := readAll(t, dev.Addr, "lines.out", len(want))
	dl := readAll(t, dev.Addr, "lines.in.dlq", 1)[0]
	if string(dl.Value) != "bad\nline" || broker.Header(dl, broker.HeaderErrorType) != "PreconditionFailed" {
		t.Errorf("dead letter %q of type %q, want the two-line event as PreconditionFailed", dl.Value, broker.Header(dl, broker.HeaderErrorType))
	}
	if n := metric(t, srv, "butter_ordered_batches_total", "linesstream"); n == 0 {
		t.Error("the stream's events went one at a time: want batches of lines")
	}
	pids := map[string]bool{}
	for k, r := range got {
		pid, line, _ := strings.Cut(string(r.Value), ":")
		pids[pid] = true
		if line != want[k] {
			t.Fatalf("output %d: %q, want <pid>:%s (in order)", k, r.Value, want[k])
		}
	}
	if len(pids) != 1 {
		t.Errorf("200 events ran in %d processes, want one", len(pids))
	}
}
