package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
)

// Emit-and-await (ctx.call) with real Node, Python and Go workers,
// through the embedded Kafka-protocol broker over TCP: the callers'
// requests go to the callee's request topic (or to a stream it
// consumes), its pool's consumer runs it and produces the reply.

// callPool is sdkPool with options, attached to dev.
func callPool(t *testing.T, dev *broker.Dev, opts []pool.Option, fns ...pool.FunctionConfig) *httptest.Server {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sdks.GoSDK = sdksGo(t)
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: fns}, nil, append([]pool.Option{pool.WithSDKs(sdks)}, opts...)...)
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
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	return srv
}

// callOutcome is what the test callers (testdata/callfn, callgo) answer.
type callOutcome struct {
	OK    *string `json:"ok"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Name    string `json:"name"`
	} `json:"error"`
}

func (o callOutcome) String() string {
	switch {
	case o.OK != nil:
		return fmt.Sprintf("ok %q", *o.OK)
	case o.Error != nil:
		return fmt.Sprintf("%s %s: %s", o.Error.Name, o.Error.Type, o.Error.Message)
	}
	return "nothing"
}

// callVia has function caller call target with value (timeout in ms, 0
// for none) over HTTP, and returns what its handler saw.
func callVia(t *testing.T, srv *httptest.Server, caller, target, value string, timeoutMS int) callOutcome {
	t.Helper()
	in := map[string]any{"target": target, "value": value}
	if timeoutMS > 0 {
		in["timeout_ms"] = timeoutMS
	}
	b, _ := json.Marshal(in)
	a := invoke(t, srv, caller, strings.NewReader(string(b)), nil)
	var o callOutcome
	if a.code != 200 || json.Unmarshal([]byte(a.body), &o) != nil || (o.OK == nil && o.Error == nil) {
		t.Fatalf("%s calling %s with %q: HTTP %d %s", caller, target, value, a.code, a.body)
	}
	return o
}

// scrape reads one series of the pool's metrics: the value of the line of
// name carrying every label of sel, and whether there is one.
func scrape(t *testing.T, srv *httptest.Server, name string, sel ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
next:
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, s := range sel {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// calleeCalls is how many calls the callee ran.
func calleeCalls(t *testing.T, srv *httptest.Server) float64 {
	ok, _ := scrape(t, srv, "butter_invocations_total", `function="callee"`, `outcome="ok"`)
	failed, _ := scrape(t, srv, "butter_invocations_total", `function="callee"`, `outcome="error"`)
	return ok + failed
}

func TestContextCall(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.orders", Partitions: 1})
	reqTopic := names.RequestTopic("st", "callee")
	callee := testdataFn("callee", "node", "callfn", "callee.handle")
	callee.Streams = []pool.StreamTrigger{
		{Stream: reqTopic, Group: names.RequestGroup("st", "callee"), Offset: "first"},
		{Stream: "st.orders", Group: "butter.st.callee.orders", Offset: "first"},
	}
	targets := []pool.CallTarget{{Kind: "function", Name: "callee", Topic: reqTopic}, {Kind: "stream", Name: "orders", Topic: "st.orders"}}
	callers := map[string]pool.FunctionConfig{
		"node":   testdataFn("cnode", "node", "callfn", "index.handle"),
		"python": testdataFn("cpython", "python", "callfn", "main.handle"),
		"go":     testdataFn("cgo", "go", "callgo", ""),
		"java":   testdataFn("cjava", "java", "calljava", "Call"),
	}
	fns := []pool.FunctionConfig{callee}
	for _, rt := range []string{"node", "python", "go", "java"} {
		f := callers[rt]
		f.Calls = targets
		f.Timeout = "1m" // the Go caller is built at its first call
		callers[rt] = f
		fns = append(fns, f)
	}
	// A wasm module calls through the host functions call and reply.
	cwasm := pool.FunctionConfig{Name: "cwasm", Runtime: "wasm", Bundle: buildWasm(t), Handler: "fn.wasm", Timeout: "1m", MaxInstances: 4, Concurrency: 4, Calls: targets}
	fns = append(fns, cwasm)
	callers["wasm"] = cwasm
	// cbreak's breaker is the one the breaker test drives.
	cbreak := testdataFn("cbreak", "node", "callfn", "index.handle")
	cbreak.Calls = targets[:1]
	fns = append(fns, cbreak)
	// s<runtime> call from stream events (st.in-<runtime>), which reach
	// their workers in batches, and write the outcomes to st.out-<runtime>.
	for _, rt := range []string{"node", "python", "go", "java"} {
		f := callers[rt]
		f.Name = "s" + rt
		f.Output = "st.out-" + rt
		f.Streams = []pool.StreamTrigger{{Stream: "st.in-" + rt, Group: "butter.st.s" + rt + ".in", Offset: "first"}}
		topics(t, cl, broker.Topic{Name: "st.in-" + rt, Partitions: 1}, broker.Topic{Name: f.Output, Partitions: 1})
		fns = append(fns, f)
	}
	const delay = 3 * time.Second
	srv := callPool(t, dev, []pool.Option{pool.WithBreaker(3, delay)}, fns...)
	waitJoined(t, cl, names.RequestGroup("st", "callee"))
	waitJoined(t, cl, "butter.st.callee.orders")

	// Every breaker is in the metrics from the start, closed.
	for _, fn := range []string{"cnode", "cpython", "cgo", "cjava", "cwasm", "cbreak"} {
		if v, ok := scrape(t, srv, "butter_breaker_state", `function="`+fn+`"`, `target="function.callee"`); !ok || v != 0 {
			t.Errorf("butter_breaker_state of %s → function.callee: %v (present %v), want 0 (closed)", fn, v, ok)
		}
	}

	t.Run("breaker", func(t *testing.T) {
		state := func() float64 {
			v, ok := scrape(t, srv, "butter_breaker_state", `function="cbreak"`, `target="function.callee"`)
			if !ok {
				t.Fatal("no butter_breaker_state for cbreak → function.callee")
			}
			return v
		}
		// waitState waits for the breaker's state to become want.
		waitState := func(want float64, within time.Duration) {
			t.Helper()
			for end := time.Now().Add(within); state() != want; {
				if time.Now().After(end) {
					t.Fatalf("breaker state %v after %s, want %v", state(), within, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		// A success, then three consecutive failures open it.
		if o := callVia(t, srv, "cbreak", "callee", "warm", 0); o.OK == nil {
			t.Fatalf("first call: %s", o)
		}
		for i := range 3 {
			if o := callVia(t, srv, "cbreak", "callee", "boom", 0); o.Error == nil || o.Error.Type != "Exception" {
				t.Fatalf("failure %d: %s, want an Exception", i+1, o)
			}
		}
		if s := state(); s != 1 {
			t.Fatalf("after 3 failures: breaker state %v, want 1 (open)", s)
		}
		// Open: fails at once, typed, and the callee never sees it.
		before := calleeCalls(t, srv)
		o := callVia(t, srv, "cbreak", "callee", "ok while open", 0)
		if o.Error == nil || o.Error.Type != "CircuitOpen" || o.Error.Name != "CallError" || !strings.Contains(o.Error.Message, "circuit breaker is open") {
			t.Fatalf("while open: %s, want a CallError of type CircuitOpen", o)
		}
		if n, _ := scrape(t, srv, "butter_context_calls_total", `function="cbreak"`, `outcome="CircuitOpen"`); n != 1 {
			t.Errorf("butter_context_calls_total{outcome=CircuitOpen}: %v, want 1", n)
		}
		// Half-open after the delay; a failed trial opens it again.
		waitState(2, 2*delay)
		if o := callVia(t, srv, "cbreak", "callee", "boom", 0); o.Error == nil || o.Error.Type != "Exception" {
			t.Fatalf("failing trial: %s, want the callee's Exception", o)
		}
		if s := state(); s != 1 {
			t.Fatalf("after a failed trial: breaker state %v, want 1 (open)", s)
		}
		if after := calleeCalls(t, srv); after != before+1 {
			t.Errorf("the callee ran %v calls since the breaker opened, want 1 (the trial)", after-before)
		}
		// Half-open again; a successful trial closes it.
		waitState(2, 2*delay)
		if o := callVia(t, srv, "cbreak", "callee", "trial", 0); o.OK == nil || *o.OK != "callee got trial" {
			t.Fatalf("successful trial: %s", o)
		}
		if s := state(); s != 0 {
			t.Fatalf("after a successful trial: breaker state %v, want 0 (closed)", s)
		}
		if o := callVia(t, srv, "cbreak", "callee", "again", 0); o.OK == nil {
			t.Fatalf("closed again: %s", o)
		}
	})

	for _, rt := range []string{"node", "python", "go", "java", "wasm"} {
		caller := callers[rt].Name
		t.Run(rt, func(t *testing.T) {
			if o := callVia(t, srv, caller, "callee", rt+" hi", 0); o.OK == nil || *o.OK != "callee got "+rt+" hi" {
				t.Errorf("reply: %s, want ok %q", o, "callee got "+rt+" hi")
			}
			// The callee's refusal reaches the caller typed.
			o := callVia(t, srv, caller, "function.callee", "fail", 0)
			if o.Error == nil || o.Error.Type != "PreconditionFailed" || o.Error.Name != "CallError" || !strings.Contains(o.Error.Message, "callee refuses fail") {
				t.Errorf("callee refuses: %s, want a CallError of type PreconditionFailed with the callee's message", o)
			}
			if o := callVia(t, srv, caller, "callee", "boom", 0); o.Error == nil || o.Error.Type != "Exception" {
				t.Errorf("callee throws: %s, want a CallError of type Exception", o)
			}
			// The callee answers after 1.5s: a 300ms timeout is a Timeout.
			if o := callVia(t, srv, caller, "callee", "slow", 300); o.Error == nil || o.Error.Type != "Timeout" {
				t.Errorf("timeout: %s, want a CallError of type Timeout", o)
			}
			// A stream: the function consuming it replies.
			if o := callVia(t, srv, caller, "stream.orders", rt+" order", 0); o.OK == nil || *o.OK != "callee got "+rt+" order" {
				t.Errorf("stream: %s, want ok %q", o, "callee got "+rt+" order")
			}
			// Undeclared: refused, naming the target and how to declare it.
			o = callVia(t, srv, caller, "nobody", "x", 0)
			if o.Error == nil || o.Error.Type != "" {
				t.Fatalf("undeclared: %s, want an untyped refusal", o)
			}
			for _, want := range []string{`unknown call target "nobody"`, "function " + caller, "function.callee, stream.orders", "calls = [function.nobody"} {
				if !strings.Contains(o.Error.Message, want) {
					t.Errorf("undeclared: %q does not say %q", o.Error.Message, want)
				}
			}
			if v, _ := scrape(t, srv, "butter_breaker_state", `function="`+caller+`"`, `target="function.callee"`); v != 0 {
				t.Errorf("breaker of %s: %v, want 0: a refusal and a reply reset its count", caller, v)
			}
		})
	}

	for _, rt := range []string{"node", "python", "go", "java"} {
		t.Run("stream events "+rt, func(t *testing.T) {
			var vals []string
			for i := range 6 {
				b, _ := json.Marshal(map[string]string{"target": "callee", "value": fmt.Sprint(rt, " event ", i)})
				vals = append(vals, string(b))
			}
			produce(t, cl, "st.in-"+rt, vals...)
			outs := readAll(t, dev.Addr, "st.out-"+rt, len(vals))
			got := map[string]bool{}
			for _, r := range outs {
				var o callOutcome
				if json.Unmarshal(r.Value, &o) != nil || o.OK == nil {
					t.Errorf("output %s, want a reply", r.Value)
					continue
				}
				got[*o.OK] = true
			}
			for i := range vals {
				if want := fmt.Sprint("callee got ", rt, " event ", i); !got[want] {
					t.Errorf("no reply %q in %v", want, got)
				}
			}
			if n, _ := scrape(t, srv, "butter_ordered_batches_total", `function="s`+rt+`"`); n == 0 {
				t.Errorf("s%s ran no batch: the calls did not come from batched events", rt)
			}
		})
	}
}

// TestContextCallWithoutKafka: a pool without Kafka answers a call
// Unavailable, saying why, and the breaker counts nothing.
func TestContextCallWithoutKafka(t *testing.T) {
	f := testdataFn("cnode", "node", "callfn", "index.handle")
	f.Calls = []pool.CallTarget{{Kind: "function", Name: "callee", Topic: names.RequestTopic("st", "callee")}}
	_, srv := sdkPool(t, nil, f)
	o := callVia(t, srv, "cnode", "callee", "x", 0)
	if o.Error == nil || o.Error.Type != "Unavailable" || !strings.Contains(o.Error.Message, "no Kafka") {
		t.Fatalf("%s, want Unavailable: no Kafka", o)
	}
}

// TestCallsConfigChecked: a calls entry must name a function's request
// topic or a stream's topic of the project.
func TestCallsConfigChecked(t *testing.T) {
	for _, c := range []struct {
		target pool.CallTarget
		want   string
	}{
		{pool.CallTarget{Kind: "function", Name: "x", Topic: "st.x"}, `function.x goes to topic "st.x"; want "st.x.requests"`},
		{pool.CallTarget{Kind: "stream", Name: "s", Topic: "st._state.s"}, `want "st.s"`},
		{pool.CallTarget{Kind: "pipeline", Name: "p", Topic: "st.p"}, `kind "pipeline"`},
	} {
		f := testdataFn("c", "node", "callfn", "index.handle")
		f.Calls = []pool.CallTarget{c.target}
		cfg := &pool.Config{Project: "st", Pool: "p", Functions: []pool.FunctionConfig{f}}
		if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.target, err, c.want)
		}
	}
}
