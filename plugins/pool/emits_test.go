package pool_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEmitsConfined: a function emits only to its output and the streams
// of its emits list. An emit anywhere else (a stream of the project it did
// not declare, another function's state changelog, tick or request topic)
// gets the "unknown stream" reply, which the handler sees as an error
// naming the stream and what it may emit to, and nothing is written there.
// Real Node and Python workers, called over HTTP and from a stream
// consumer (whose events go to them in batches), against the embedded
// Kafka-protocol broker over TCP.
func TestEmitsConfined(t *testing.T) {
	accepted := []string{"alerts", "out"}
	refused := map[string]string{ // the stream a function names: its topic
		"other":           "st.other",
		"_state.victim":   pool.StateTopic("st", "victim"),
		"_timers.victim":  "st._timers.victim",
		"victim.requests": "st.victim.requests",
		"":                "st.",
	}
	for _, c := range []struct{ runtime, handler string }{{"node", "index.handle"}, {"python", "main.handle"}} {
		t.Run(c.runtime, func(t *testing.T) {
			dev, cl := devBroker(t)
			ts := []broker.Topic{{Name: "st.in", Partitions: 1}, {Name: "st.out", Partitions: 1}, {Name: "st.alerts", Partitions: 1}}
			for _, topic := range refused {
				if topic != "st." {
					ts = append(ts, broker.Topic{Name: topic, Partitions: 1})
				}
			}
			topics(t, cl, ts...)
			f := testdataFn("emitter", c.runtime, "emitto", c.handler)
			f.Output = "st.out"
			f.Emits = []string{"st.alerts"}
			f.Streams = []pool.StreamTrigger{{Stream: "st.in", Group: "butter.st.emitter.in", Offset: "first"}}
			// silent has neither an output nor an emits list.
			silent := testdataFn("silent", c.runtime, "emitto", c.handler)
			_, srv := sdkPool(t, dev, f, silent)
			if a := invoke(t, srv, "silent", strings.NewReader("alerts"), nil); a.code != 200 || !strings.Contains(a.body, `refused: unknown stream "alerts": function silent may emit to no stream`) {
				t.Errorf("silent's emit to alerts: %+v, want it refused", a)
			}

			check := func(path, stream, answer string) {
				t.Helper()
				if _, bad := refused[stream]; !bad {
					if answer != "accepted "+stream {
						t.Errorf("%s: emit to %q answered %q, want it accepted", path, stream, answer)
					}
					return
				}
				for _, want := range []string{"refused: ", `unknown stream "` + stream + `"`, "function emitter", "alerts, out"} {
					if !strings.Contains(answer, want) {
						t.Errorf("%s: emit to %q answered %q, want it refused with an error containing %q", path, stream, answer, want)
						return
					}
				}
			}
			names := append([]string(nil), accepted...)
			for s := range refused {
				names = append(names, s)
			}
			// From HTTP calls.
			for _, s := range names {
				a := invoke(t, srv, "emitter", strings.NewReader(s), nil)
				if a.code != 200 {
					t.Fatalf("http: emit to %q: %+v", s, a)
				}
				check("http", s, a.body)
			}
			// From stream events: their outputs are the answers.
			produce(t, cl, "st.in", names...)
			answers := map[string]bool{}
			outs, ok := readTopic(t, dev.Addr, "st.out", 60*time.Second, func(recs []*kgo.Record) bool {
				for _, r := range recs {
					if v := string(r.Value); strings.HasPrefix(v, "accepted ") || strings.HasPrefix(v, "refused: ") {
						answers[v] = true
					}
				}
				return len(answers) >= len(names)
			})
			if !ok {
				t.Fatalf("stream: %d answers after 60s, want %d: %v", len(answers), len(names), answers)
			}
			for _, r := range outs {
				v := string(r.Value)
				if !strings.HasPrefix(v, "accepted ") && !strings.HasPrefix(v, "refused: ") {
					continue
				}
				for _, s := range names {
					if v == "accepted "+s || strings.Contains(v, `unknown stream "`+s+`"`) {
						check("stream", s, v)
					}
				}
			}

			// Every emit was acknowledged (or refused) before its call
			// answered: the topics hold their final counts now. The
			// accepted emits are there, once per call (silent's is not);
			// the refused wrote nothing.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			emitted := func(topic string) []string {
				recs, ok := readTopic(t, dev.Addr, topic, 30*time.Second, func(recs []*kgo.Record) bool {
					n := 0
					for _, r := range recs {
						if string(r.Value) == c.runtime+" emitted to "+strings.TrimPrefix(topic, "st.") {
							n++
						}
					}
					return n >= 2
				})
				if !ok {
					t.Errorf("%s: %d records, want the 2 emits (http, stream)", topic, len(recs))
				}
				var vals []string
				for _, r := range recs {
					vals = append(vals, string(r.Value))
				}
				return vals
			}
			emitted("st.alerts")
			emitted("st.out")
			var internal []string
			for _, topic := range refused {
				if topic != "st." {
					internal = append(internal, topic)
				}
			}
			ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, append(internal, "st.alerts")...)
			if err != nil {
				t.Fatal(err)
			}
			ends.Each(func(o kadm.ListedOffset) {
				want := int64(0)
				if o.Topic == "st.alerts" {
					want = 2
				}
				if o.Err != nil || o.Offset != want {
					t.Errorf("topic %s partition %d ends at %d (%v), want %d: a refused emit was written", o.Topic, o.Partition, o.Offset, o.Err, want)
				}
			})
			if got := len(ends); got != len(internal)+1 {
				t.Errorf("end offsets of %d topics, want %d", got, len(internal)+1)
			}
		})
	}
}

// TestEmitsChecked: a pool config whose emits list names anything but a
// stream of its project (an internal topic, another project's stream) is
// refused before the pool starts.
func TestEmitsChecked(t *testing.T) {
	for _, topic := range []string{"st._state.victim", "st._timers.victim", "st.victim.requests", "other.alerts", "st.", ""} {
		c := &pool.Config{Project: "st", Functions: []pool.FunctionConfig{{Name: "f", Timeout: "1s", MaxInstances: 1, Emits: []string{topic}}}}
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), "emits") {
			t.Errorf("emits %q: check gave %v, want it refused", topic, err)
		}
	}
	c := &pool.Config{Project: "st", Functions: []pool.FunctionConfig{{Name: "f", Timeout: "1s", MaxInstances: 1, Emits: []string{"st.alerts"}}}}
	if err := c.Check(); err != nil {
		t.Errorf("emits st.alerts: %v", err)
	}
}
