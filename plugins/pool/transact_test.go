package pool_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/sdk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestExactlyOnceRecords: with exactly_once = true, everything a stream
// event writes goes in a transaction: a Node function's outputs and emits
// and a Go function's outputs and state changelog records are
// transactional records, which a read_committed consumer reads once each,
// and the groups' offsets are committed with them. The pool then stops
// cleanly (its sessions leave their groups) within the test's deadline.
// Real workers, the embedded broker over TCP.
func TestExactlyOnceRecords(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "st.in", Partitions: 2}, broker.Topic{Name: "st.out", Partitions: 1},
		broker.Topic{Name: "st.alerts", Partitions: 1}, broker.Topic{Name: "st.fin", Partitions: 2}, broker.Topic{Name: "st.folds", Partitions: 1})
	emitter := testdataFn("emitter", "node", "emitto", "index.handle")
	emitter.Output, emitter.Emits = "st.out", []string{"st.alerts"}
	emitter.Streams = []pool.StreamTrigger{{Stream: "st.in", Group: "butter.st.emitter.in", Offset: "first", ExactlyOnce: true}}
	folder := testdataFn("folder", "go", "gofn", "")
	folder.Output, folder.State = "st.folds", &pool.StateConfig{Key: pool.StateKeyRecord}
	folder.Streams = []pool.StreamTrigger{{Stream: "st.fin", Group: "butter.st.folder.fin", Offset: "first", ExactlyOnce: true}}
	all, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all.GoSDK = sdksGo(t)
	p, err := pool.New(&pool.Config{Project: "st", Pool: "p", Functions: []pool.FunctionConfig{emitter, folder}}, nil,
		pool.WithSDKs(all), pool.WithInstanceID("test-1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			p.Close()
		}
	}()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var alerts []string
	for range n {
		alerts = append(alerts, "alerts")
	}
	produce(t, cl, "st.in", alerts...)
	var folds []string
	for i := range n {
		folds = append(folds, fmt.Sprintf("fold:%d", i))
	}
	keyed(t, cl, "st.fin", "k", folds...)

	for topic, want := range map[string]int{"st.out": n, "st.alerts": n, "st.folds": n, pool.StateTopic("st", "folder"): n} {
		recs := readCommitted(t, dev.Addr, topic, want)
		for _, r := range recs {
			if !r.Attrs.IsTransactional() {
				t.Errorf("%s: record at offset %d is not transactional", topic, r.Offset)
			}
		}
		if topic == "st.folds" {
			if last := string(recs[len(recs)-1].Value); last != fmt.Sprintf(`{"n":%d,"sum":%d,"last":%d,"bad":0}`, n, n*(n-1)/2, n-1) {
				t.Errorf("the last fold is %s", last)
			}
		}
	}
	adm := kadm.NewClient(cl)
	committed := func() bool {
		for group, topic := range map[string]string{"butter.st.emitter.in": "st.in", "butter.st.folder.fin": "st.fin"} {
			offs, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				return false
			}
			sum := int64(0)
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == topic {
					sum += o.At
				}
			})
			if sum != n {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !committed() {
		if time.Now().After(deadline) {
			t.Fatal("the groups' offsets were not all committed within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling the broker, not waiting for time
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		p.Close()
	}()
	select {
	case <-stopped:
		closed = true
	case <-time.After(30 * time.Second):
		t.Fatal("the pool did not stop within 30s")
	}
}

// readCommitted reads topic from its start as a read_committed consumer
// until want records arrived, and fails the test if they do not within a
// minute; more than want fails it too, once the topic's end is reached.
func readCommitted(t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	for ctx.Err() == nil && len(out) < want {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) != want {
		t.Fatalf("%s: %d records read_committed, want %d", topic, len(out), want)
	}
	return out
}

// TestExactlyOnceOrderAcrossPolls: a transaction takes the records of
// the polls made while its records run (pollMore), each partition's in
// its lane after the ones before. 6,000 keyed events of 2 KiB, written
// in batches of at most 16 KiB to 3 partitions, go through a Go function
// that takes 200µs an event: every key's outputs are read_committed in
// the order of its events, each once. A fetch brings at most 64 KiB of
// each partition (about 90 such records in all, so at least 66
// transactions if each took one poll): the output topic's single
// partition holds a marker per transaction, and at most one per 100
// events shows transactions made of several polls.
// Real worker, the embedded broker over TCP.
func TestExactlyOnceOrderAcrossPolls(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "eo.in", Partitions: 3}, broker.Topic{Name: "eo.out", Partitions: 1})
	const n, keys = 6000, 12
	pcl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ProducerBatchMaxBytes(16<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	pad := make([]byte, 1000)
	var recs []*kgo.Record
	for i := range n {
		_, _ = rand.Read(pad)
		k, seq := i%keys, i/keys
		v := fmt.Sprintf("tick-k%02d-%05d-%x", k, seq, pad)
		recs = append(recs, broker.NewEvent("eo.in", fmt.Appendf(nil, "k%02d", k), []byte(v), fmt.Sprintf("k%02d-%d", k, seq), "test", "test"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fn := testdataFn("ticker", "go", "gofn", "")
	fn.Output = "eo.out"
	fn.Streams = []pool.StreamTrigger{{Stream: "eo.in", Group: "butter.eo.ticker.in", Offset: "first", ExactlyOnce: true}}
	eosPool(ctx, t, dev, "eo", fn)
	next := make([]int, keys)
	for _, r := range readCommitted(t, dev.Addr, "eo.out", n) {
		var k, seq int
		if _, err := fmt.Sscanf(string(r.Value), "TICK-K%02d-%05d-", &k, &seq); err != nil || k < 0 || k >= keys {
			t.Fatalf("output at offset %d: %.40q is not an echo of an input", r.Offset, r.Value)
		}
		if seq != next[k] {
			t.Fatalf("key k%02d: output %d at offset %d, want %d: out of order, lost or repeated", k, seq, r.Offset, next[k])
		}
		next[k]++
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "eo.out")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("eo.out", 0)
	markers := end.Offset - n
	t.Logf("%d events in %d transactions", n, markers)
	if markers < 1 || markers > n/100 {
		t.Errorf("eo.out holds %d transaction markers for %d events: want 1 to %d, transactions of several polls", markers, n, n/100)
	}
}

// TestExactlyOnceTransactionsEndWhileRecordsKeepComing: records that keep
// coming while a transaction's lanes run do not keep it open (txPollFor).
// A Go function takes 300ms an event; once the group has its member,
// an event is produced every 100ms, faster than they are handled, until
// an output is committed (its last stable offset moves) or 60 were
// produced. Without the bound, the transaction would take every event
// produced while its lane is busy, and commit nothing until the
// producer stopped. Real worker, the embedded broker over TCP.
func TestExactlyOnceTransactionsEndWhileRecordsKeepComing(t *testing.T) {
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "eb.in", Partitions: 1}, broker.Topic{Name: "eb.out", Partitions: 1})
	fn := testdataFn("slow", "go", "gofn", "")
	fn.Output = "eb.out"
	const group = "butter.eb.slow.in"
	fn.Streams = []pool.StreamTrigger{{Stream: "eb.in", Group: group, Offset: "first", ExactlyOnce: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eosPool(ctx, t, dev, "eb", fn)
	waitJoined(t, cl, group)
	adm := kadm.NewClient(cl)
	committed := func() int64 {
		offs, err := adm.ListCommittedOffsets(ctx, "eb.out")
		if err != nil {
			return 0
		}
		o, _ := offs.Lookup("eb.out", 0)
		return o.Offset
	}
	for i := range 60 {
		produce(t, cl, "eb.in", "slow")
		if committed() > 0 {
			t.Logf("an output committed after %d events produced", i+1)
			return
		}
		time.Sleep(100 * time.Millisecond) // the pace of the events: faster than they are handled
	}
	t.Fatal("60 events produced 100ms apart and no output committed: the transaction stayed open while events kept coming")
}

// eosPool starts a pool of project's fns with the Go SDK and the
// instance ID "test-1" (stable transactional IDs), consuming their
// streams on dev; the test's end closes it.
func eosPool(ctx context.Context, t *testing.T, dev *broker.Dev, project string, fns ...pool.FunctionConfig) *pool.Pool {
	t.Helper()
	all, err := sdk.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all.GoSDK = sdksGo(t)
	p, err := pool.New(&pool.Config{Project: project, Pool: "p", Functions: fns}, nil, pool.WithSDKs(all), pool.WithInstanceID("test-1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	return p
}
