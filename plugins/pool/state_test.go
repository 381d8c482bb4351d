package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/butterfn/butter/names"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Per-key state and parameters, with real Node, Python and Go workers and,
// for the changelog, the embedded broker over TCP.

// sdkPool starts a pool of project "st" with every SDK installed, serving
// HTTP; with dev, it also attaches Kafka (StartStreams). The test may stop
// the pool early; the cleanup stops what is still running.
func sdkPool(t *testing.T, dev *broker.Dev, fns ...pool.FunctionConfig) (*pool.Pool, *httptest.Server) {
	t.Helper()
	sdks, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sdks.GoSDK = sdksGo(t)
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: fns}, nil, pool.WithSDKs(sdks))
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
	if dev != nil {
		if err := p.StartStreams(ctx, dev.Config()); err != nil {
			t.Fatal(err)
		}
	}
	return p, srv
}

func sdksGo(t *testing.T) string { return sdks(t).GoSDK }

func testdataFn(name, runtime, dir, handler string) pool.FunctionConfig {
	abs, _ := filepath.Abs(filepath.Join("testdata", dir))
	f := pool.FunctionConfig{Name: name, Runtime: runtime, Bundle: abs, Handler: handler, Timeout: "20s", MaxInstances: 4, Concurrency: 2,
		Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}}
	return f
}

func TestParamsReachFunctions(t *testing.T) {
	node := testdataFn("params", "node", "paramsfn", "index.handle")
	gofn := testdataFn("gofn", "go", "gofn", "")
	_, srv := sdkPool(t, nil, node, gofn)
	hdr := map[string]string{"Butter-Param-Device": "d1", "Butter-Param-deviceId": "x 1", "Butter-Param-ROOM": "kitchen", "Butter-Option-E": "not a param"}
	a := invoke(t, srv, "params", nil, hdr)
	want := `{"device":"d1","params":{"device":"d1","deviceid":"x 1","room":"kitchen"}}`
	if a.code != 200 || a.body != want {
		t.Errorf("node: %d %s, want %s", a.code, a.body, want)
	}
	a = invoke(t, srv, "gofn", strings.NewReader("params"), hdr)
	if want := `{"device":"d1","deviceid":"x 1","room":"kitchen"}`; a.code != 200 || a.body != want {
		t.Errorf("go: %d %s, want %s", a.code, a.body, want)
	}
}

type counted struct {
	Key     string          `json:"key"`
	N       int             `json:"n"`
	State   json.RawMessage `json:"state"`
	Deleted bool            `json:"deleted"`
}

func callState(t *testing.T, srv *httptest.Server, fn, body string, hdr map[string]string) counted {
	t.Helper()
	a := invoke(t, srv, fn, strings.NewReader(body), hdr)
	if a.code != 200 {
		t.Fatalf("%s %s: %d %s", fn, body, a.code, a.body)
	}
	var c counted
	if err := json.Unmarshal([]byte(a.body), &c); err != nil {
		t.Fatalf("%s %s: %q: %v", fn, body, a.body, err)
	}
	return c
}

// TestHTTPState: a Node function with state keyed by "device", in memory
// (no Kafka): the key comes from the body, else the parameter of that
// name, else the Butter-State-Key header; calls of one key are
// serialized; delete and TTL work; a call without a key cannot set state.
func TestHTTPState(t *testing.T) {
	f := testdataFn("counter", "node", "statefn", "index.handle")
	f.State = &pool.StateConfig{Key: "device"}
	ttl := testdataFn("short", "node", "statefn", "index.handle")
	ttl.State = &pool.StateConfig{Key: "device", TTL: "1h"}
	gofn := testdataFn("gocount", "go", "gofn", "")
	gofn.State = &pool.StateConfig{Key: "$key"}
	p, srv := sdkPool(t, nil, f, ttl, gofn)
	// The TTL runs on a clock the test steps: the calls take no time on
	// it, however slow the machine.
	clock := &testClock{t: time.Now()}
	pool.SetStateClock(p, "short", clock.now)

	for i := 1; i <= 3; i++ {
		if c := callState(t, srv, "counter", `{"device":"d1"}`, nil); c.Key != "d1" || c.N != i {
			t.Fatalf("call %d for d1: %+v", i, c)
		}
	}
	if c := callState(t, srv, "counter", `{"device":"d2","t":1}`, nil); c.Key != "d2" || c.N != 1 {
		t.Errorf("d2: %+v", c)
	}
	// A number is a key as written; the parameter, then the header, serve
	// when the body has no such field.
	if c := callState(t, srv, "counter", `{"device":7}`, nil); c.Key != "7" || c.N != 1 {
		t.Errorf("numeric key: %+v", c)
	}
	if c := callState(t, srv, "counter", ``, map[string]string{"Butter-Param-Device": "d1"}); c.Key != "d1" || c.N != 4 {
		t.Errorf("key from the parameter: %+v", c)
	}
	if c := callState(t, srv, "counter", `not json`, map[string]string{names.HeaderStateKey: "d1", "Butter-Param-Room": "x"}); c.Key != "d1" || c.N != 5 {
		t.Errorf("key from the header: %+v", c)
	}
	if c := callState(t, srv, "counter", `{"device":"d2"}`, map[string]string{"Butter-Param-Device": "d1", names.HeaderStateKey: "d1"}); c.Key != "d2" || c.N != 2 {
		t.Errorf("the body's field comes first: %+v", c)
	}
	// No key: the state reads as null and cannot be set.
	if c := callState(t, srv, "counter", `{"op":"read"}`, nil); c.Key != "" || string(c.State) != "null" {
		t.Errorf("read without a key: %+v", c)
	}
	a := invoke(t, srv, "counter", strings.NewReader(`{"other":1}`), nil)
	if a.code != 500 || a.errType != "Exception" || !strings.Contains(a.body, `no state key (the event has no \"device\" field`) {
		t.Errorf("set without a key: %+v", a)
	}

	// Calls of one key run one at a time, across instances: no update is
	// lost, although the function waits between its read and its write.
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			invoke(t, srv, "counter", strings.NewReader(`{"device":"busy","slow":true}`), nil)
		}()
	}
	wg.Wait()
	if c := callState(t, srv, "counter", `{"device":"busy","op":"read"}`, nil); string(c.State) != `{"n":24}` {
		t.Errorf("after 24 concurrent calls of one key the state is %s", c.State)
	}

	// A state over the limit fails the call and changes nothing.
	a = invoke(t, srv, "counter", strings.NewReader(`{"device":"busy","op":"big"}`), nil)
	if a.code != 500 || a.errType != "PostconditionFailed" || !strings.Contains(a.body, "at most 1000000") {
		t.Errorf("a state too large: %+v", a)
	}
	if c := callState(t, srv, "counter", `{"device":"busy","op":"read"}`, nil); string(c.State) != `{"n":24}` {
		t.Errorf("after a state too large: %s", c.State)
	}

	// Delete, then the count starts again.
	if c := callState(t, srv, "counter", `{"device":"d1","op":"delete"}`, nil); !c.Deleted {
		t.Errorf("delete: %+v", c)
	}
	if c := callState(t, srv, "counter", `{"device":"d1","op":"read"}`, nil); string(c.State) != "null" {
		t.Errorf("after delete: %+v", c)
	}
	if c := callState(t, srv, "counter", `{"device":"d1"}`, nil); c.N != 1 {
		t.Errorf("after delete: %+v", c)
	}

	// TTL: a state not written for an hour reads as none; a write
	// restarts its hour.
	if c := callState(t, srv, "short", `{"device":"d1"}`, nil); c.N != 1 {
		t.Fatalf("ttl: %+v", c)
	}
	clock.add(59 * time.Minute)
	if c := callState(t, srv, "short", `{"device":"d1"}`, nil); c.N != 2 {
		t.Fatalf("ttl, 59 minutes after the write: %+v", c)
	}
	clock.add(59 * time.Minute)
	if c := callState(t, srv, "short", `{"device":"d1","op":"read"}`, nil); string(c.State) != `{"n":2}` {
		t.Fatalf("ttl, 59 minutes after the second write: %+v", c)
	}
	clock.add(2 * time.Minute)
	if c := callState(t, srv, "short", `{"device":"d1","op":"read"}`, nil); string(c.State) != "null" {
		t.Errorf("ttl, 61 minutes after the last write: %+v", c)
	}
	if c := callState(t, srv, "short", `{"device":"d1"}`, nil); c.N != 1 {
		t.Errorf("after the TTL: %+v", c)
	}

	// Go, keyed by "$key": the header alone.
	for i := 1; i <= 2; i++ {
		a := invoke(t, srv, "gocount", strings.NewReader("count"), map[string]string{names.HeaderStateKey: "g", "Butter-Param-Key": "no"})
		if want := fmt.Sprintf("g=%d", i); a.code != 200 || a.body != want {
			t.Errorf("go call %d: %d %q, want %q", i, a.code, a.body, want)
		}
	}
}

// changelog reads a state changelog topic to its end: key -> last value
// ("" for a tombstone).
func changelog(t *testing.T, addr, topic string) (map[string]string, int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	recs, ok := readTopic(t, addr, topic, 30*time.Second, func(r []*kgo.Record) bool {
		return len(r) > 0 && r[len(r)-1].Offset >= end.Offset-1
	})
	if !ok {
		t.Fatalf("changelog %s: read %d records, not to its end %d", topic, len(recs), end.Offset)
	}
	m := map[string]string{}
	for _, r := range recs {
		m[string(r.Key)] = string(r.Value)
	}
	return m, len(recs)
}

// counterStream drives the Python counter of testdata/statefn on a stream:
// events {"device", "seq"} keyed by device in, {"device", "seq", "count"}
// out.
type counterStream struct {
	t   *testing.T
	dev *broker.Dev
	cl  *kgo.Client
	seq int
}

func newCounterStream(t *testing.T, partitions int) (*counterStream, pool.FunctionConfig) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.readings", Partitions: partitions})
	f := testdataFn("counter", "python", "statefn", "counter.handle")
	f.Output = "st.counts"
	f.Streams = []pool.StreamTrigger{{Stream: "st.readings", Group: "butter.st.counter.readings", Offset: "first"}}
	f.State = &pool.StateConfig{Key: "device", TTL: "1h"}
	return &counterStream{t: t, dev: dev, cl: cl}, f
}

func (s *counterStream) send(device string, n int) {
	s.t.Helper()
	var recs []*kgo.Record
	for range n {
		s.seq++
		v := fmt.Sprintf(`{"device":%q,"seq":%d}`, device, s.seq)
		recs = append(recs, broker.NewEvent("st.readings", []byte(device), []byte(v), fmt.Sprint(s.seq), "test", "test"))
	}
	if err := s.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

type counterOut struct {
	Device     string
	Seq, Count int
}

// check reads the outputs until every event sent has one, then compares
// the counts each device's events got, in the order sent, with want.
func (s *counterStream) check(want map[string][]int) {
	s.t.Helper()
	got := map[int]counterOut{}
	readTopic(s.t, s.dev.Addr, "st.counts", 60*time.Second, func(rs []*kgo.Record) bool {
		for _, r := range rs {
			var o counterOut
			if err := json.Unmarshal(r.Value, &o); err != nil {
				s.t.Fatalf("output %q: %v", r.Value, err)
			}
			got[o.Seq] = o
		}
		return len(got) == s.seq
	})
	if len(got) != s.seq {
		s.t.Fatalf("outputs for %d events, want %d", len(got), s.seq)
	}
	seen := map[string][]int{}
	for i := 1; i <= s.seq; i++ {
		seen[got[i].Device] = append(seen[got[i].Device], got[i].Count)
	}
	for d, w := range want {
		if fmt.Sprint(seen[d]) != fmt.Sprint(w) {
			s.t.Errorf("device %s: counts %v, want %v", d, seen[d], w)
		}
	}
}

// TestStreamState: a Python stream function counts events per device
// (state { key = "device" }). Its changelog is a compacted topic; a new
// pool on the same config restores the counts and continues them.
func TestStreamState(t *testing.T) {
	s, f := newCounterStream(t, 3)
	p, _ := sdkPool(t, s.dev, f)
	s.send("d1", 5)
	s.send("d2", 3)
	s.send("d1", 1)
	s.check(map[string][]int{"d1": {1, 2, 3, 4, 5, 6}, "d2": {1, 2, 3}})
	p.Close()

	// The changelog: compacted, one partition, the last state per key.
	topic := pool.StateTopic("st", "counter")
	adm := kadm.NewClient(s.cl)
	details, err := adm.ListTopics(context.Background(), topic)
	if err != nil || len(details[topic].Partitions) != 1 {
		t.Fatalf("changelog topic %s: %+v %v", topic, details[topic], err)
	}
	cfgs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := cfgs.On(topic, nil); err != nil || !hasConfig(rc, "cleanup.policy", "compact,delete") || !hasConfig(rc, "retention.ms", "3600000") {
		t.Errorf("changelog configs: %+v %v", rc.Configs, err)
	}
	if last, n := changelog(t, s.dev.Addr, topic); last["d1"] != `{"count": 6}` || last["d2"] != `{"count": 3}` || n != 9 {
		t.Errorf("changelog: %d records, last %v", n, last)
	}

	// A new pool on the same config and broker continues the counts.
	sdkPool(t, s.dev, f)
	s.send("d2", 1)
	s.send("d1", 2)
	s.send("d3", 1)
	s.check(map[string][]int{"d1": {1, 2, 3, 4, 5, 6, 7, 8}, "d2": {1, 2, 3, 4}, "d3": {1}})
}

// TestStreamStateHandover: two pools run the counter on a one-partition
// stream. The first owns the partition and counts; when it stops, the
// second takes the partition over and continues from the state the first
// wrote while both ran.
func TestStreamStateHandover(t *testing.T) {
	s, f := newCounterStream(t, 1)
	a, srvA := sdkPool(t, s.dev, f)
	waitJoined(t, s.cl, "butter.st.counter.readings")
	_, srvB := sdkPool(t, s.dev, f)
	eventually(t, 30*time.Second, "both pools in the group", func() bool {
		ds, err := kadm.NewClient(s.cl).DescribeGroups(context.Background(), "butter.st.counter.readings")
		d := ds["butter.st.counter.readings"]
		return err == nil && d.State == "Stable" && len(d.Members) == 2
	})
	s.send("d1", 3)
	s.send("d2", 1)
	s.check(map[string][]int{"d1": {1, 2, 3}, "d2": {1}})
	if na, nb := metric(t, srvA, "butter_invocations_total", "counter"), metric(t, srvB, "butter_invocations_total", "counter"); na != 4 || nb != 0 {
		t.Fatalf("pool a handled %v events, pool b %v; want all on a, which joined first", na, nb)
	}
	a.Close()
	s.send("d1", 2)
	s.check(map[string][]int{"d1": {1, 2, 3, 4, 5}, "d2": {1}})
	if nb := metric(t, srvB, "butter_invocations_total", "counter"); nb != 2 {
		t.Errorf("pool b handled %v events after the handover, want 2", nb)
	}
}

func hasConfig(rc kadm.ResourceConfig, name, value string) bool {
	for _, c := range rc.Configs {
		if c.Key == name && c.Value != nil && *c.Value == value {
			return true
		}
	}
	return false
}

// TestHTTPStateChangelog: with Kafka, an HTTP function's state changes
// reach its changelog (a delete as a tombstone), another pool running the
// function follows them, and a pool started later restores them.
func TestHTTPStateChangelog(t *testing.T) {
	dev, _ := devBroker(t)
	f := testdataFn("counter", "node", "statefn", "index.handle")
	f.State = &pool.StateConfig{Key: "device"}
	_, a := sdkPool(t, dev, f)
	_, b := sdkPool(t, dev, f)
	for i := 1; i <= 3; i++ {
		callState(t, a, "counter", `{"device":"d1"}`, nil)
	}
	callState(t, a, "counter", `{"device":"gone"}`, nil)
	callState(t, a, "counter", `{"device":"gone","op":"delete"}`, nil)
	topic := pool.StateTopic("st", "counter")
	last, n := changelog(t, dev.Addr, topic)
	if _, ok := last["gone"]; last["d1"] != `{"n":3}` || !ok || last["gone"] != "" || n != 5 {
		t.Errorf("changelog: %d records, last %q", n, last)
	}
	// Pool b follows a's writes.
	eventually(t, 30*time.Second, "pool b sees d1's state", func() bool {
		return string(callState(t, b, "counter", `{"device":"d1","op":"read"}`, nil).State) == `{"n":3}`
	})
	if c := callState(t, b, "counter", `{"device":"d1"}`, nil); c.N != 4 {
		t.Errorf("b after a: %+v", c)
	}
	// A pool started now restores the state before it serves.
	_, c := sdkPool(t, dev, f)
	if got := callState(t, c, "counter", `{"device":"d1","op":"read"}`, nil); string(got.State) != `{"n":4}` {
		t.Errorf("restored d1: %s", got.State)
	}
	if got := callState(t, c, "counter", `{"device":"gone","op":"read"}`, nil); string(got.State) != "null" {
		t.Errorf("restored the deleted key: %s", got.State)
	}
}

// testClock is a clock that moves only when the test says.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
