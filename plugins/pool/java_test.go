package pool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/hashicorp/go-hclog"
)

// TestJava runs real Java workers (the SDK in sdk/java, compiled with the
// JDK's javac at the pool's start, as a client does) through a pool:
// echo, the answer's status and headers, parameters and the deadline,
// no output and several outputs, typed and untyped failures, logs,
// per-key state, calls at once up to the concurrency, emits through the
// embedded broker (an undeclared stream refused), and stream events in
// batches. TestContextCall covers ctx.call from Java.
func TestJava(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.out", Partitions: 1}, broker.Topic{Name: "st.jin", Partitions: 1}, broker.Topic{Name: "st.jout", Partitions: 1})
	echo := testdataFn("echo", "java", "javafn", "Echo")
	echo.Concurrency, echo.MaxInstances = 4, 2
	fail := testdataFn("fail", "java", "javafn", "Fail")
	counter := testdataFn("counter", "java", "javafn", "Counter")
	counter.State = &pool.StateConfig{Key: "device"}
	emit := testdataFn("emit", "java", "javafn", "Emit")
	emit.Emits = []string{"st.out"}
	// jstream echoes stream events, which reach it in batches.
	jstream := testdataFn("jstream", "java", "javafn", "Echo")
	jstream.Output = "st.jout"
	jstream.Streams = []pool.StreamTrigger{{Stream: "st.jin", Group: "butter.st.jstream.in", Offset: "first"}}
	logs := &testlog.Buffer{}
	srv := javaPool(t, dev, logs, echo, fail, counter, emit, jstream)

	if a := invoke(t, srv, "echo", strings.NewReader("héllo java"), nil); a.code != 200 || a.body != "héllo java" {
		t.Fatalf("echo: %+v", a)
	}
	if a := invoke(t, srv, "echo", strings.NewReader("created"), nil); a.code != 201 || a.header.Get("Location") != "/things/7" || strings.Join(a.header.Values("X-Java"), ",") != "a,b" {
		t.Errorf("a status and headers: %d %v", a.code, a.header)
	}
	a := invoke(t, srv, "echo", strings.NewReader("params"), map[string]string{"Butter-Param-Device": "d1"})
	if a.code != 200 || a.body != `{"params":{"device":"d1"},"function":"echo","remaining_positive":true}` {
		t.Errorf("params: %+v", a)
	}
	if a := invoke(t, srv, "echo", strings.NewReader("nothing"), nil); a.code != 200 || a.body != "" {
		t.Errorf("no output: %+v", a)
	}
	if a := invoke(t, srv, "echo", strings.NewReader("outputs"), nil); a.code != 200 || a.body != `{"butter.outputs":[{"text":"a"},{"key":"k","value":{"n":1}}]}` {
		t.Errorf("outputs: %+v", a)
	}
	for in, want := range map[string][2]string{
		"refuse": {"PreconditionFailed", "java refuses refuse"},
		"custom": {"UnspecifiedError", `(error type \"Overheated\") too hot`},
		"boom":   {"Exception", "java broke on boom"},
	} {
		a := invoke(t, srv, "fail", strings.NewReader(in), nil)
		if a.errType != want[0] || !strings.Contains(a.body, want[1]) {
			t.Errorf("fail %q: %d %s, want %s saying %q", in, a.code, a.body, want[0], want[1])
		}
	}
	waitLog(t, logs, "java echo got 10 bytes")
	waitLog(t, logs, "java.lang.IllegalStateException: java broke on boom") // the detail, in the pool's log

	for i := 1; i <= 3; i++ {
		a := invoke(t, srv, "counter", strings.NewReader(`{"device":"d1"}`), nil)
		if want := fmt.Sprintf(`{"key":"d1","n":%d}`, i); a.code != 200 || !sameJSON(a.body, want) {
			t.Fatalf("counter call %d: %+v, want %s", i, a, want)
		}
	}
	if a := invoke(t, srv, "counter", strings.NewReader(`{"device":"d1","op":"delete"}`), nil); a.code != 200 {
		t.Fatalf("delete: %+v", a)
	}
	if a := invoke(t, srv, "counter", strings.NewReader(`{"device":"d1"}`), nil); !sameJSON(a.body, `{"key":"d1","n":1}`) {
		t.Errorf("after delete: %+v", a)
	}

	// Eight calls of 300ms at once: four per instance, two instances.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := invoke(t, srv, "echo", strings.NewReader("sleep"), nil); a.code != 200 || a.body != "sleep" {
				t.Errorf("concurrent call %d: %+v", i, a)
			}
		}()
	}
	wg.Wait()

	a = invoke(t, srv, "emit", strings.NewReader("ping"), nil)
	if a.code != 200 || !strings.Contains(a.body, `refused: nowhere: unknown stream "nowhere"`) {
		t.Fatalf("emit: %+v", a)
	}
	recs := readAll(t, dev.Addr, "st.out", 2)
	if string(recs[0].Key) != "k1" || string(recs[0].Value) != "ping" || string(recs[1].Key) != "k2" || string(recs[1].Value) != `{"again":"ping"}` {
		t.Errorf("emitted %s=%s, %s=%s", recs[0].Key, recs[0].Value, recs[1].Key, recs[1].Value)
	}

	var vals []string
	for i := range 20 {
		vals = append(vals, fmt.Sprint("event ", i))
	}
	produce(t, cl, "st.jin", vals...)
	outs := readAll(t, dev.Addr, "st.jout", len(vals))
	for i, r := range outs {
		if string(r.Value) != vals[i] {
			t.Fatalf("stream output %d: %q, want %q (in order)", i, r.Value, vals[i])
		}
	}
	if n, _ := scrape(t, srv, "butter_ordered_batches_total", `function="jstream"`); n == 0 {
		t.Error("jstream ran no batch: the events did not come in batches")
	}
}

// TestJavaLoadErrors: a handler class that does not exist, and sources
// that do not compile, fail the pool's start naming the function, with
// javac's or the worker's words in the error.
func TestJavaLoadErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/Bad.java", "public class Bad implements dev.butter.Handler { int x = ; }\n")
	bad := testdataFn("bad", "java", "javafn", "Echo")
	bad.Bundle = dir
	missing := testdataFn("missing", "java", "javafn", "NoSuchClass")
	err := javaStart(t, bad, missing)
	var le *pool.LoadError
	if !errors.As(err, &le) || strings.Join(le.Names(), ",") != "bad,missing" {
		t.Fatalf("Start: %v, want a LoadError naming bad and missing", err)
	}
	for _, want := range []string{"javac of function bad failed", "Bad.java:1", "no class NoSuchClass on the class path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the start error does not say %q:\n%v", want, err)
		}
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// javaPool is sdkPool with the pool's log in logs (Kafka only with dev).
func javaPool(t *testing.T, dev *broker.Dev, logs *testlog.Buffer, fns ...pool.FunctionConfig) *httptest.Server {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: fns}, nil, pool.WithSDKs(sdks), pool.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	if dev == nil {
		return srv
	}
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	return srv
}

// javaStart starts a pool of fns and returns Start's error.
func javaStart(t *testing.T, fns ...pool.FunctionConfig) error {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: fns}, nil, pool.WithSDKs(sdks))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return p.Start(ctx)
}

// waitLog waits until the log holds s.
func waitLog(t *testing.T, logs *testlog.Buffer, s string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), s); {
		if time.Now().After(end) {
			t.Fatalf("the pool's log has no %q:\n%s", s, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
