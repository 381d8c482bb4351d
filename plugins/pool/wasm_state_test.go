package pool_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/butterfn/butter/plugins/pool"
)

// TestWasmState: a wasm module (Go, wasip1) keeps a counter per state key
// through the host functions state_get, state_key, state_set and
// state_delete, in memory (no Kafka), as the Node counter of
// TestHTTPState does: counts per key, calls of one key serialized across
// instances, a read, a delete after which the count starts again, a
// value that is not JSON refused with the state unchanged, and a call
// without a key refused when it sets state.
func TestWasmState(t *testing.T) {
	f := pool.FunctionConfig{Name: "wcount", Runtime: "wasm", Bundle: buildWasm(t), Handler: "fn.wasm", Timeout: "1m", MaxInstances: 4, Concurrency: 8,
		State: &pool.StateConfig{Key: "device"}}
	_, srv := sdkPool(t, nil, f)

	for i := 1; i <= 3; i++ {
		if c := callState(t, srv, "wcount", `{"count":1,"device":"d1"}`, nil); c.Key != "d1" || c.N != i {
			t.Fatalf("call %d for d1: %+v", i, c)
		}
	}
	if c := callState(t, srv, "wcount", `{"count":1,"device":"d2"}`, nil); c.Key != "d2" || c.N != 1 {
		t.Errorf("d2: %+v", c)
	}
	if c := callState(t, srv, "wcount", `{"count":1,"device":"d1","op":"read"}`, nil); string(c.State) != `{"n":3}` {
		t.Errorf("read d1: %+v", c)
	}

	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := invoke(t, srv, "wcount", strings.NewReader(`{"count":1,"device":"busy"}`), nil); a.code != 200 {
				t.Errorf("a concurrent call: %+v", a)
			}
		}()
	}
	wg.Wait()
	if c := callState(t, srv, "wcount", `{"count":1,"device":"busy","op":"read"}`, nil); string(c.State) != `{"n":16}` {
		t.Errorf("after 16 concurrent calls of one key the state is %s", c.State)
	}

	if c := callState(t, srv, "wcount", `{"count":1,"device":"d1","op":"delete"}`, nil); !c.Deleted || c.Key != "d1" {
		t.Errorf("delete: %+v", c)
	}
	if c := callState(t, srv, "wcount", `{"count":1,"device":"d1","op":"read"}`, nil); string(c.State) != "null" {
		t.Errorf("after delete: %+v", c)
	}
	if c := callState(t, srv, "wcount", `{"count":1,"device":"d1"}`, nil); c.N != 1 {
		t.Errorf("after delete: %+v", c)
	}

	a := invoke(t, srv, "wcount", strings.NewReader(`{"count":1,"device":"d2","op":"bad"}`), nil)
	if a.code != 200 || a.body != "refused: butter: state: the value is not JSON" {
		t.Errorf("a value that is not JSON: %+v", a)
	}
	if c := callState(t, srv, "wcount", `{"count":1,"device":"d2","op":"read"}`, nil); string(c.State) != `{"n":1}` {
		t.Errorf("after the refused value: %+v", c)
	}

	a = invoke(t, srv, "wcount", strings.NewReader(`{"count":1}`), nil)
	if a.code != 500 || a.errType != "Exception" || !strings.Contains(a.body, `no state key (the event has no \"device\" field`) {
		t.Errorf("set without a key: %+v", a)
	}
}
