package pool_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/hashicorp/go-hclog"
)

// Tests of the worker protocol as the pool and the SDKs speak it
// (docs/worker-protocol.md), with real Go, Node and Python workers.

// TestBatchResultsWithinFrameLimit: outputs that together pass the 16 MiB
// frame limit (eight of 3 MiB, then 1000 KiB and 15.5 MiB) come back from
// Node and Python workers in RESULTS frames within it: every event
// succeeds once, and the pool never takes the worker for a broken one
// (it used to get a 24 MiB frame, kill the worker and run the events
// again).
func TestBatchResultsWithinFrameLimit(t *testing.T) {
	dev, cl := devBroker(t)
	for _, c := range []struct{ runtime, handler string }{{"node", "index.handle"}, {"python", "main.handle"}} {
		t.Run(c.runtime, func(t *testing.T) {
			in, name := c.runtime+".big", c.runtime+"big"
			topics(t, cl, broker.Topic{Name: in, Partitions: 1})
			// The first event goes alone (the pool measures it); the rest
			// in one batch. No output stream: Kafka takes no 3 MiB record.
			vals := []string{"1:a"}
			for k := 0; k < 8; k++ {
				vals = append(vals, "3072:b")
			}
			vals = append(vals, "1000:c", "15872:d", "1:e")
			keyed(t, cl, in, "k", vals...)
			f := testdataFn(name, c.runtime, "protofn", c.handler)
			f.Streams = []pool.StreamTrigger{{Stream: in, Group: "butter.test." + name, Offset: "first"}}
			f.MaxInstances = 1
			_, srv := sdkPool(t, dev, f)

			eventually(t, 2*time.Minute, "every event handled", func() bool {
				return metricOf(t, srv, "butter_invocations_total", name, `outcome="ok"`)+metricOf(t, srv, "butter_invocations_total", name, `outcome="error"`) >= float64(len(vals))
			})
			ok, failed := metricOf(t, srv, "butter_invocations_total", name, `outcome="ok"`), metricOf(t, srv, "butter_invocations_total", name, `outcome="error"`)
			if ok != float64(len(vals)) || failed != 0 {
				t.Errorf("%v events succeeded and %v failed, want %d and 0", ok, failed, len(vals))
			}
			if n := metric(t, srv, "butter_instance_restarts_total", name); n != 0 {
				t.Errorf("%v restarts: the pool took the worker for a broken one", n)
			}
			if n := metric(t, srv, "butter_ordered_batches_total", name); n < 1 {
				t.Errorf("no batch: the events went one at a time")
			}
		})
	}
}

// holdAndKill has the only instance of a Python protofn function start a
// child that keeps the worker's fd 4 open ("hold"), then kills the worker
// and waits until it is gone: the pool cannot see that it died (its fd 4
// stays open) until a call writes to it.
func holdAndKill(t *testing.T, srv *httptest.Server, function string) {
	t.Helper()
	a := invoke(t, srv, function, strings.NewReader("hold"), nil)
	pid, err := strconv.Atoi(a.body)
	if a.code != 200 || err != nil {
		t.Fatalf("hold: %d %s", a.code, a.body)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the killed worker reaped", func() bool { return syscall.Kill(pid, 0) == syscall.ESRCH })
}

// TestCallReachesDeadInstance: a call that reaches an instance which has
// died, before anything of the call was sent, goes to another instance:
// an HTTP call succeeds instead of failing as InstanceFailed, and a stream
// event whose only attempt it is (no retry policy) is handled instead of
// dead-lettered.
func TestCallReachesDeadInstance(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "dead.in", Partitions: 1}, broker.Topic{Name: "dead.out", Partitions: 1})
	f := testdataFn("deadpy", "python", "protofn", "main.handle")
	f.MaxInstances, f.Concurrency = 1, 1
	f.Output = "dead.out"
	f.Streams = []pool.StreamTrigger{{Stream: "dead.in", Group: "butter.test.deadpy", Offset: "first"}}
	_, srv := sdkPool(t, dev, f)

	holdAndKill(t, srv, "deadpy")
	if a := invoke(t, srv, "deadpy", strings.NewReader("http"), nil); a.code != 200 || a.body != "HTTP" {
		t.Errorf("HTTP call on a dead instance: %d %s, want 200 HTTP", a.code, a.body)
	}
	holdAndKill(t, srv, "deadpy")
	produce(t, cl, "dead.in", "event")
	if out := readAll(t, dev.Addr, "dead.out", 1); string(out[0].Value) != "EVENT" {
		t.Errorf("output %q, want EVENT", out[0].Value)
	}
	// Now that the pool has measured an event, several go in a batch,
	// which reaches the dead instance.
	holdAndKill(t, srv, "deadpy")
	keyed(t, cl, "dead.in", "k", "e1", "e2", "e3")
	outputsInOrder(t, dev.Addr, "dead.out", []string{"event", "e1", "e2", "e3"})
	if n := metricOf(t, srv, "butter_invocation_errors_total", "deadpy", `type="InstanceFailed"`); n != 0 {
		t.Errorf("%v calls failed as InstanceFailed, want none", n)
	}
	eventually(t, 30*time.Second, "the three deaths counted", func() bool {
		return metric(t, srv, "butter_instance_restarts_total", "deadpy") == 3
	})
}

// TestLogLevels: a function's log keeps its level in the pool's log:
// ctx.log's level from Go, Node and Python workers, and an exec
// function's stderr lines, each with the level its prefix names ("[WARN]
// ..."), however the pipe merged them, when the function's log is an
// hclog logger that infers levels (as butter dev's and the pool's are).
func TestLogLevels(t *testing.T) {
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sdks.GoSDK = sdksGo(t)
	logs := &testlog.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace, JSONFormat: true})
	gofn := testdataFn("loggo", "go", "protofn", "")
	gofn.Timeout = "2m" // its first call builds it
	execfn := fn("logexec", "exec", "sh", "-c", `printf '[WARN] exec warns\n[ERROR] exec fails\n[DEBUG] exec debugs\nexec says\n' >&2`)
	execfn.Bundle = gofn.Bundle
	fns := []pool.FunctionConfig{gofn, testdataFn("lognode", "node", "protofn", "index.handle"), testdataFn("logpy", "python", "protofn", "main.handle"), execfn}
	p, err := pool.New(&pool.Config{Project: "logs", Pool: "p", Functions: fns}, func(fn string) io.Writer {
		return logger.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, pool.WithSDKs(sdks), pool.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})

	want := map[string]string{"exec warns": "warn", "exec fails": "error", "exec debugs": "debug", "exec says": "info"}
	for _, rt := range []string{"go", "node", "python"} {
		for _, level := range []string{"debug", "info", "warn", "error"} {
			want[fmt.Sprintf("%s logs at %s", rt, level)] = level
		}
	}
	for _, fn := range []string{"loggo", "lognode", "logpy", "logexec"} {
		if a := invoke(t, srv, fn, strings.NewReader("log"), nil); a.code != 200 {
			t.Fatalf("%s: %d %s", fn, a.code, a.body)
		}
	}
	got := map[string]string{}
	eventually(t, 30*time.Second, "every log line in the pool's log", func() bool {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var e struct {
				Message string `json:"@message"`
				Level   string `json:"@level"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				if _, ok := want[e.Message]; ok {
					got[e.Message] = e.Level
				}
			}
		}
		return len(got) == len(want)
	})
	for msg, level := range want {
		if got[msg] != level {
			t.Errorf("%q logged at %q, want %q", msg, got[msg], level)
		}
	}
}

// TestUnspecifiedError: a function error whose type Butter does not know
// (a Node error's butterType, a Python exception's butter_type) is an
// UnspecifiedError, its message naming the type it had: answered 500 on
// HTTP, and retried on a stream (here in a batch, then one at a time)
// before its dead letter. Known types keep theirs.
func TestUnspecifiedError(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "unspec.in", Partitions: 1}, broker.Topic{Name: "unspec.out", Partitions: 1})
	node := testdataFn("unspecnode", "node", "protofn", "index.handle")
	py := testdataFn("unspecpy", "python", "protofn", "main.handle")
	py.Output = "unspec.out"
	py.Streams = []pool.StreamTrigger{{Stream: "unspec.in", Group: "butter.test.unspecpy", Offset: "first"}}
	py.MaxInstances = 1
	py.Retry = &pool.RetryConfig{Attempts: 2, Backoff: "10ms", MaxBackoff: "20ms"}
	_, srv := sdkPool(t, dev, node, py)

	for _, c := range []struct {
		function, input string
		code            int
		typ, message    string
	}{
		{"unspecnode", "type:NotFound", 500, pool.UnspecifiedError, `(error type "NotFound") an error of type NotFound`},
		{"unspecpy", "type:Teapot", 500, pool.UnspecifiedError, `(error type "Teapot") an error of type Teapot`},
		{"unspecnode", "type:PreconditionFailed", 422, "PreconditionFailed", "an error of type PreconditionFailed"},
	} {
		a := invoke(t, srv, c.function, strings.NewReader(c.input), nil)
		var body struct {
			Error struct{ Type, Message string }
		}
		_ = json.Unmarshal([]byte(a.body), &body)
		if a.code != c.code || body.Error.Type != c.typ || body.Error.Message != c.message {
			t.Errorf("%s %s: %d %s, want %d %s %q", c.function, c.input, a.code, a.body, c.code, c.typ, c.message)
		}
	}

	keyed(t, cl, "unspec.in", "k", "a", "b", "type:Teapot", "c")
	outputsInOrder(t, dev.Addr, "unspec.out", []string{"a", "b", "c"})
	dl := readAll(t, dev.Addr, "unspec.in.dlq", 1)[0]
	if typ := broker.Header(dl, broker.HeaderErrorType); typ != pool.UnspecifiedError || broker.Attempts(dl) != 2 {
		t.Errorf("dead letter of type %q after %d attempts, want UnspecifiedError after 2 (it is retried)", typ, broker.Attempts(dl))
	}
	if n := metricOf(t, srv, "butter_invocation_errors_total", "unspecpy", `type="Teapot"`); n != 0 {
		t.Errorf("%v errors counted under the worker's own type Teapot", n)
	}
	if n := metricOf(t, srv, "butter_invocation_errors_total", "unspecpy", `type="UnspecifiedError"`); n < 3 {
		t.Errorf("%v UnspecifiedErrors counted, want at least 3 (the HTTP call and both attempts)", n)
	}
	if n := metric(t, srv, "butter_ordered_batches_total", "unspecpy"); n < 1 {
		t.Errorf("no batch: the failure in a batch was not tested")
	}
}

// TestExecStderrOnce: an exec function's stderr reaches the pool's log
// once, line by line in the function's log, when the pool has function
// logs (as butter dev's and butter pool's do): the entry of a failed HTTP
// call and the warning of a dead letter do not repeat it, though the
// call's message keeps its last line and the dead letter keeps it whole.
func TestExecStderrOnce(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "stderr.in", Partitions: 1})
	logs := &testlog.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace, JSONFormat: true})
	httpfn := fn("stderrhttp", "exec", "sh", "-c", `printf 'marker-http one\nmarker-http two: broken\n' >&2; exit 3`)
	streamfn := streamFn("stderrstream", "first", "stderr.in", "", "sh", "-c", `printf 'marker-stream one\nmarker-stream two: broken\n' >&2; exit 3`)
	for _, f := range []*pool.FunctionConfig{&httpfn, &streamfn} {
		f.Bundle = t.TempDir()
	}
	p, srv := startLogged(t, "stderr", []pool.FunctionConfig{httpfn, streamfn}, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}

	a := invoke(t, srv, "stderrhttp", strings.NewReader("x"), nil)
	if a.code != 500 || !strings.Contains(a.body, "marker-http two: broken") {
		t.Errorf("%d %s: want 500 and the last line of stderr", a.code, a.body)
	}
	produce(t, cl, "stderr.in", "x")
	dl := readAll(t, dev.Addr, "stderr.in.dlq", 1)[0]
	if msg := broker.Header(dl, broker.HeaderErrorMessage); !strings.Contains(msg, "marker-stream one") {
		t.Errorf("dead letter message %q: want the whole stderr", msg)
	}
	for _, marker := range []string{"marker-http one", "marker-stream one"} {
		if n := strings.Count(logs.String(), marker); n != 1 {
			t.Errorf("%q is %d times in the log, want once:\n%s", marker, n, logs.String())
		}
	}
}
