package pool_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
)

// TestWasmStream: a wasm function on a stream of two partitions, through
// the embedded broker over TCP, answers every event into its output
// stream (in upper case, one record per event).
func TestWasmStream(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.win", Partitions: 2}, broker.Topic{Name: "st.wout", Partitions: 1})
	f := pool.FunctionConfig{Name: "wup", Runtime: "wasm", Bundle: buildWasm(t), Handler: "fn.wasm", Timeout: "1m", MaxInstances: 2, Concurrency: 4,
		Output: "st.wout", Streams: []pool.StreamTrigger{{Stream: "st.win", Group: "butter.st.wup.win", Offset: "first"}}}
	callPool(t, dev, nil, f)
	var in, want []string
	for i := range 20 {
		in = append(in, fmt.Sprintf("event %02d", i))
		want = append(want, fmt.Sprintf("EVENT %02d", i))
	}
	produce(t, cl, "st.win", in...)
	var got []string
	for _, r := range readAll(t, dev.Addr, "st.wout", len(in)) {
		got = append(got, string(r.Value))
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("outputs %q, want %q", got, want)
	}
}
