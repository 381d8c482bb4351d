package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Exact outputs and event metadata (issue 16, items 2 and 6), with real
// Node, Python and Go workers against the embedded broker over TCP.

var traceparent = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// checkMeta fails unless rec carries the metadata every record Butter
// writes for a call of fn on input in carries (docs/events.md).
func checkMeta(t *testing.T, what string, rec, in *kgo.Record, fn string) {
	t.Helper()
	h := func(k string) string { return broker.Header(rec, k) }
	if h("ce_specversion") != "1.0" || h("ce_id") == "" || h("ce_source") == "" || h("ce_type") == "" {
		t.Errorf("%s: envelope headers missing: %v", what, rec.Headers)
	}
	if _, err := time.Parse(time.RFC3339Nano, h("ce_time")); err != nil {
		t.Errorf("%s: ce_time %q: %v", what, h("ce_time"), err)
	}
	if !traceparent.MatchString(h("ce_traceparent")) {
		t.Errorf("%s: ce_traceparent %q is not W3C", what, h("ce_traceparent"))
	}
	if len(rec.Key) > 0 && h("ce_subject") != string(rec.Key) {
		t.Errorf("%s: ce_subject %q, key %q", what, h("ce_subject"), rec.Key)
	}
	if in != nil {
		at := in.Topic + "/" + strconv.Itoa(int(in.Partition)) + "/" + strconv.FormatInt(in.Offset, 10)
		if h("ce_inputid") != broker.Header(in, "ce_id") || h("ce_origintopic") != at {
			t.Errorf("%s: input headers %q %q, want %s %s", what, h("ce_inputid"), h("ce_origintopic"), broker.Header(in, "ce_id"), at)
		}
	}
	_ = fn
}

// TestExactOutputs: a call that returns nothing writes no record to its
// output stream; one that returns N outputs (the SDK's outputs helper)
// writes N, each with its own id "<input id>/<function>/output/<k>"; a
// retried call's emits have the same ids as the failed attempt's, and the
// ids of different emits differ; outputs, emits and dead letters carry
// the metadata; an expired event (ce_ttl) is dead-lettered as Expired,
// not run; the function sees its event's metadata (ctx.event).
func TestExactOutputs(t *testing.T) {
	for _, c := range []struct{ runtime, dir, handler string }{{"node", "exactfn", "index.handle"}, {"python", "exactfn", "main.handle"}, {"go", "exactgo", ""}} {
		t.Run(c.runtime, func(t *testing.T) {
			dev, cl := devBroker(t)
			topics(t, cl, broker.Topic{Name: "st.in", Partitions: 1}, broker.Topic{Name: "st.out", Partitions: 1}, broker.Topic{Name: "st.side", Partitions: 1})
			name := "exact" + c.runtime
			f := testdataFn(name, c.runtime, c.dir, c.handler)
			f.Output = "st.out"
			f.Emits = []string{"st.side"}
			f.Streams = []pool.StreamTrigger{{Stream: "st.in", Group: "butter.st." + name + ".in", Offset: "first"}}
			f.MaxInstances = 1
			f.Retry = &pool.RetryConfig{Attempts: 3, Backoff: "10ms", MaxBackoff: "20ms"}

			trace := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			ev := func(id, body string, hdr ...string) *kgo.Record {
				r := broker.NewEvent("st.in", []byte("k"), []byte(body), id, "test", "test")
				for i := 0; i+1 < len(hdr); i += 2 {
					broker.SetHeader(r, hdr[i], hdr[i+1])
				}
				return r
			}
			recs := []*kgo.Record{
				ev("e0", `{"id":"e0","n":0}`),
				ev("e1", `{"id":"e1","n":1}`),
				ev("e2", `{"id":"e2","n":3,"keyed":true}`),
				ev("e3", `{"id":"e3","n":2,"emits":2,"fail_once":true}`),
				ev("e4", `{"id":"e4","meta":true}`, "ce_ttl", "1h", "ce_traceparent", trace),
				ev("e5", `{"id":"e5","n":1,"emits":1}`, "ce_ttl", "1s", "ce_time", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)),
				ev("e6", `{"id":"e6","fail":true}`),
				ev("e7", `{"id":"e7","n":1}`),
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			in := map[string]*kgo.Record{}
			for _, r := range recs {
				in[broker.Header(r, "ce_id")] = r
			}
			sdkPool(t, dev, f)

			// e7's output is the last: the partition is handled in order.
			outs, ok := readTopic(t, dev.Addr, "st.out", 2*time.Minute, func(rs []*kgo.Record) bool {
				return len(rs) > 0 && broker.Header(rs[len(rs)-1], "ce_inputid") == "e7"
			})
			if !ok {
				t.Fatalf("no output of e7 within 2 minutes; read %d", len(outs))
			}
			var got []string
			ids := map[string]bool{}
			for _, r := range outs {
				id := broker.Header(r, "ce_id")
				got = append(got, id)
				if ids[id] {
					t.Errorf("output id %s twice", id)
				}
				ids[id] = true
				if len(r.Value) == 0 {
					t.Errorf("empty output record %s", id)
				}
				checkMeta(t, "output "+id, r, in[broker.Header(r, "ce_inputid")], name)
				if broker.Header(r, "ce_type") != "butter.output" || broker.Header(r, "ce_source") != "butter/st/"+name {
					t.Errorf("output %s: type %q source %q", id, broker.Header(r, "ce_type"), broker.Header(r, "ce_source"))
				}
			}
			want := []string{"e1/%s/output/0", "e2/%s/output/0", "e2/%s/output/1", "e2/%s/output/2", "e3/%s/output/0", "e3/%s/output/1", "e4/%s/output/0", "e7/%s/output/0"}
			for i := range want {
				want[i] = fmt.Sprintf(want[i], name)
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("outputs\n%v\nwant (no record for e0 nor for the expired e5, three for e2)\n%v", got, want)
			}
			for _, r := range outs {
				switch id := broker.Header(r, "ce_id"); id {
				case "e2/" + name + "/output/1":
					if string(r.Value) != "out 1 of e2" || string(r.Key) != "k" {
						t.Errorf("%s: %q key %q", id, r.Value, r.Key)
					}
				case "e2/" + name + "/output/2":
					if string(r.Value) != "out 2 of e2" || string(r.Key) != "other" {
						t.Errorf("%s: %q key %q, want its own key", id, r.Value, r.Key)
					}
				case "e4/" + name + "/output/0":
					// What the function saw, and the ttl and trace
					// carried on.
					var e map[string]any
					if err := json.Unmarshal(r.Value, &e); err != nil {
						t.Fatalf("ctx.event of e4: %s: %v", r.Value, err)
					}
					wantE := map[string]any{"id": "e4", "source": "test", "type": "test", "subject": "k", "stream": "in",
						"partition": float64(0), "offset": float64(in["e4"].Offset), "ttl": "1h", "traceparent": broker.Header(r, "ce_traceparent"), "http": nil}
					for k, v := range wantE {
						if e[k] != v {
							t.Errorf("ctx.event.%s = %v, want %v (all: %s)", k, e[k], v, r.Value)
						}
					}
					if tm, _ := e["time"].(string); tm != broker.Header(in["e4"], "ce_time") {
						t.Errorf("ctx.event.time %v, want the event's ce_time", e["time"])
					}
					if tp := broker.Header(r, "ce_traceparent"); tp != trace {
						t.Errorf("traceparent %s: want the input's, %s", tp, trace)
					}
					if d, err := time.ParseDuration(broker.Header(r, "ce_ttl")); err != nil || d <= 0 || d > time.Hour {
						t.Errorf("ce_ttl %q on an output of an event with 1h to live", broker.Header(r, "ce_ttl"))
					}
				}
			}

			// Emits: e3's two, in both attempts, with the same two ids; no
			// emit of e5, which did not run.
			side, ok := readTopic(t, dev.Addr, "st.side", time.Minute, func(rs []*kgo.Record) bool { return len(rs) >= 4 })
			if !ok {
				t.Fatalf("%d emits, want 4 (2 per attempt of e3)", len(side))
			}
			count := map[string]int{}
			for _, r := range side {
				id := broker.Header(r, "ce_id")
				count[id]++
				checkMeta(t, "emit "+id, r, in[broker.Header(r, "ce_inputid")], name)
				if k := strings.TrimPrefix(id, "e3/"+name+"/emit/"); string(r.Value) != "emit "+k+" of e3" {
					t.Errorf("emit %s: %q", id, r.Value)
				}
			}
			if len(count) != 2 || count["e3/"+name+"/emit/0"] != 2 || count["e3/"+name+"/emit/1"] != 2 {
				t.Errorf("emit ids %v, want e3/%s/emit/0 and /1, twice each (the retried call's are the same)", count, name)
			}

			// Dead letters: the expired e5, not run, and the refused e6,
			// with their metadata.
			dls := readAll(t, dev.Addr, "st.in.dlq", 2)
			for _, dl := range dls {
				id := broker.Header(dl, "ce_id")
				checkMeta(t, "dead letter "+id, dl, in[id], name)
				typ, attempts := broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl)
				switch id {
				case "e5":
					if typ != "Expired" || attempts != 0 || !strings.Contains(broker.Header(dl, broker.HeaderErrorMessage), "expired") {
						t.Errorf("e5: %s after %d attempts (%s), want Expired after 0", typ, attempts, broker.Header(dl, broker.HeaderErrorMessage))
					}
				case "e6":
					if typ != "PreconditionFailed" || attempts != 1 {
						t.Errorf("e6: %s after %d attempts", typ, attempts)
					}
				default:
					t.Errorf("dead letter %s", id)
				}
			}
		})
	}
}

// TestExactHTTPEmits: the emits of HTTP calls get ids from the request id
// and their place: distinct across calls without a request id (the pool
// makes one), the same for a retried request with the same X-Request-Id.
func TestExactHTTPEmits(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.side", Partitions: 1})
	f := testdataFn("exact", "node", "exactfn", "index.handle")
	f.Emits = []string{"st.side"}
	_, srv := sdkPool(t, dev, f)
	body := `{"id":"h","n":1,"emits":2}`
	for _, hdr := range []map[string]string{nil, nil, {"X-Request-Id": "req-1"}, {"X-Request-Id": "req-1"}} {
		if a := invoke(t, srv, "exact", strings.NewReader(body), hdr); a.code != 200 || a.body != "out 0 of h" {
			t.Fatalf("%+v", a)
		}
	}
	// What an HTTP call sees: its request id, and the route's request
	// as the gateway sends it (Ce-Http* headers).
	a := invoke(t, srv, "exact", strings.NewReader(`{"id":"m","meta":true,"emits":1}`), map[string]string{"X-Request-Id": "req-2",
		"Ce-Httpmethod": "PUT", "Ce-Httppath": "/devices/d1", "Ce-Httpquery": "a=1", "Ce-Httpheaders": `{"x-custom":"v"}`})
	var e struct {
		ID, Traceparent string
		Partition       *int
		HTTP            struct {
			Method, Path, Query string
			Headers             map[string]string
		}
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.ID != "req-2" || !traceparent.MatchString(e.Traceparent) || e.Partition != nil ||
		e.HTTP.Method != "PUT" || e.HTTP.Path != "/devices/d1" || e.HTTP.Query != "a=1" || e.HTTP.Headers["x-custom"] != "v" {
		t.Errorf("ctx.event of an HTTP call: %d %s", a.code, a.body)
	}
	side := readAll(t, dev.Addr, "st.side", 9)
	count := map[string]int{}
	for _, r := range side {
		id := broker.Header(r, "ce_id")
		checkMeta(t, "emit", r, nil, "exact")
		if id == "req-2/exact/emit/0" {
			// An emit of a call through a route carries the request.
			if broker.Header(r, "ce_httpmethod") != "PUT" || broker.Header(r, "ce_httppath") != "/devices/d1" || broker.Header(r, "ce_httpquery") != "a=1" ||
				broker.Header(r, "ce_httpheaders") != `{"x-custom":"v"}` || broker.Header(r, "ce_inputid") != "req-2" {
				t.Errorf("emit of a routed call: %v", r.Headers)
			}
			continue
		}
		count[id]++
	}
	fresh := 0
	for id, n := range count {
		switch {
		case id == "req-1/exact/emit/0" || id == "req-1/exact/emit/1":
			if n != 2 {
				t.Errorf("%s %d times, want 2", id, n)
			}
		case regexp.MustCompile(`^http-[0-9a-f]{24}/exact/emit/[01]$`).MatchString(id) && n == 1:
			fresh++
		default:
			t.Errorf("emit id %s (%d times)", id, n)
		}
	}
	if fresh != 4 {
		t.Errorf("ids %v: want 4 distinct ones for the two calls without a request id", count)
	}
}

// TestExactExecEnvelope: an exec function prints the outputs envelope for
// several outputs (an empty one is skipped, its index kept); an output
// that starts as the envelope but is not one is a PostconditionFailed,
// dead-lettered after one attempt; any other output is one, and an empty
// one none.
func TestExactExecEnvelope(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "x.in", Partitions: 1}, broker.Topic{Name: "x.out", Partitions: 1})
	f := streamFn("env", "first", "x.in", "x.out", "sh", "-c", `case "$(cat)" in
many) printf '%s' '{ "butter.outputs" : [{"text":"a"},{"value":{"x":1}},{"base64":"AAE="},{"text":""},{"key":"k2","text":"b"}]}' ;;
bad) printf '%s' '{"butter.outputs": [{"text":"a","value":1}]}' ;;
plain) printf '%s' '{"butter.outputsX": 1}' ;;
esac`)
	f.Retry = &pool.RetryConfig{Attempts: 3, Backoff: "10ms", MaxBackoff: "20ms"}
	streamPool(t, dev, f)
	keyed(t, cl, "x.in", "k", "none", "many", "bad", "plain")
	outs, ok := readTopic(t, dev.Addr, "x.out", time.Minute, func(rs []*kgo.Record) bool {
		return len(rs) > 0 && broker.Header(rs[len(rs)-1], "ce_inputid") == "plain"
	})
	if !ok {
		t.Fatalf("no output of plain within a minute: %d", len(outs))
	}
	var got []string
	for _, r := range outs {
		got = append(got, fmt.Sprintf("%s=%s@%s", broker.Header(r, "ce_id"), r.Value, r.Key))
	}
	want := []string{"many/env/output/0=a@k", `many/env/output/1={"x":1}@k`, "many/env/output/2=\x00\x01@k", "many/env/output/4=b@k2", `plain/env/output/0={"butter.outputsX": 1}@k`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("outputs\n%q\nwant\n%q", got, want)
	}
	dl := readAll(t, dev.Addr, "x.in.dlq", 1)[0]
	if string(dl.Value) != "bad" || broker.Header(dl, broker.HeaderErrorType) != "PostconditionFailed" || broker.Attempts(dl) != 1 ||
		!strings.Contains(broker.Header(dl, broker.HeaderErrorMessage), "butter.outputs") {
		t.Errorf("dead letter %s: %s after %d: %s", dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), broker.Header(dl, broker.HeaderErrorMessage))
	}
}

// TestIoTDetectorAlertsOnly runs examples/iot's detector (Python, state
// per device) on four readings, one of them a jump: one record on the
// alerts stream, the alert, where every reading used to write one,
// three of them empty. Once the group committed the four readings, their
// outputs are acknowledged (docs/events.md, "Delivery"), so the topic's
// end offset counts every record they wrote.
func TestIoTDetectorAlertsOnly(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.readings", Partitions: 1}, broker.Topic{Name: "st.alerts", Partitions: 1})
	bundle, err := filepath.Abs("../../examples/iot/functions/detect")
	if err != nil {
		t.Fatal(err)
	}
	f := pool.FunctionConfig{Name: "detect", Runtime: "python", Bundle: bundle, Handler: "detect.handle", Timeout: "20s", MaxInstances: 1, Concurrency: 1,
		Env: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}, Output: "st.alerts", State: &pool.StateConfig{Key: "device"},
		Streams: []pool.StreamTrigger{{Stream: "st.readings", Group: "butter.st.detect.readings", Offset: "first"}}}
	sdkPool(t, dev, f)
	produce := func(device string, temp float64) {
		r := broker.NewEvent("st.readings", []byte(device), fmt.Appendf(nil, `{"device":%q,"temperature":%g}`, device, temp), device+"-"+strconv.FormatFloat(temp, 'f', -1, 64), "test", "test")
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("d1", 20)
	produce("d1", 31.5)
	produce("d2", 10)
	produce("d1", 32)
	adm := kadm.NewClient(cl)
	eventually(t, 2*time.Minute, "the four readings committed", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), "butter.st.detect.readings")
		if err != nil {
			return false
		}
		o, ok := offs.Lookup("st.readings", 0)
		return ok && o.At == 4
	})
	ends, err := adm.ListEndOffsets(context.Background(), "st.alerts")
	if err != nil {
		t.Fatal(err)
	}
	if end, _ := ends.Lookup("st.alerts", 0); end.Offset != 1 {
		t.Fatalf("%d records on the alerts stream, want 1 (the jump of d1)", end.Offset)
	}
	r := readAll(t, dev.Addr, "st.alerts", 1)[0]
	var a struct {
		Device   string
		From, To float64
	}
	if err := json.Unmarshal(r.Value, &a); err != nil || a.Device != "d1" || a.From != 20 || a.To != 31.5 || string(r.Key) != "d1" {
		t.Errorf("alert %s (key %s), want d1 from 20 to 31.5", r.Value, r.Key)
	}
}
