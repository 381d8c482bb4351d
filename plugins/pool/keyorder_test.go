package pool_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStreamOrderByKeyBatches: with order = "key", a Go function (whose
// worker runs batches) gets each key's events in batches, keys side by
// side, and each key keeps its order through failures and a rebalance:
// 600 events of 12 keys on 2 partitions, every seventh failing its first
// attempt (retried, the key's later events waiting), a second pool
// joining the group midway (partitions move, uncommitted events run
// again). Per key, the outputs' first occurrences are in input order and
// none is missing; duplicates are the redelivery at least once allows.
func TestStreamOrderByKeyBatches(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "kb.in", Partitions: 2}, broker.Topic{Name: "kb.out", Partitions: 2})
	f := fn("keyed", "go")
	f.Output, f.MaxInstances, f.Concurrency = "kb.out", 1, 8
	f.Streams = []pool.StreamTrigger{{Stream: "kb.in", Group: "butter.test.keyed.kb.in", Offset: "first", Order: "key"}}
	f.Retry = &pool.RetryConfig{Attempts: 5, Backoff: "5ms", MaxBackoff: "20ms"}
	const keys, perKey = 12, 50
	value := func(k, i int) string {
		v := fmt.Sprintf("k%02d-%03d", k, i)
		if (k*perKey+i)%7 == 0 {
			v = "flaky-" + v
		}
		return v
	}
	var recs []*kgo.Record
	for i := range perKey {
		for k := range keys {
			v := value(k, i)
			recs = append(recs, broker.NewEvent("kb.in", []byte(fmt.Sprintf("k%02d", k)), []byte(v), v, "test", "test"))
		}
	}
	half := len(recs) / 2
	if err := cl.ProduceSync(context.Background(), recs[:half]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	_, srvA := streamPoolSrv(t, dev, f)
	readAll(t, dev.Addr, "kb.out", half/2) // pool A is under way
	streamPoolSrv(t, dev, f)               // pool B joins: a rebalance
	if err := cl.ProduceSync(context.Background(), recs[half:]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, ok := readTopic(t, dev.Addr, "kb.out", 3*time.Minute, func(rs []*kgo.Record) bool {
		return len(values(rs)) == len(recs)
	})
	if !ok {
		t.Fatalf("%d distinct outputs of %d events after 3 minutes", len(values(out)), len(recs))
	}
	next := map[string]int{} // key -> the next sequence number expected first
	first := map[string]bool{}
	for _, r := range out {
		v := strings.TrimPrefix(string(r.Value), "FLAKY-")
		if first[v] {
			continue // a redelivered event's output, seen before
		}
		first[v] = true
		key, seqText, _ := strings.Cut(v, "-")
		seq, _ := strconv.Atoi(seqText)
		if want := next[strings.ToLower(key)]; seq != want {
			t.Fatalf("key %s: event %d's output first came after %d's (want %d next)", key, seq, want-1, want)
		}
		next[strings.ToLower(key)] = seq + 1
	}
	for k := range keys {
		if got := next[fmt.Sprintf("k%02d", k)]; got != perKey {
			t.Errorf("key k%02d: %d of %d outputs", k, got, perKey)
		}
	}
	if n := metric(t, srvA, "butter_ordered_batches_total", "keyed"); n == 0 {
		t.Error("pool A ran no batch: key order went one event at a time")
	}
}
