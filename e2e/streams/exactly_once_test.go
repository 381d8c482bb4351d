package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/plugins/pool"
)

// foldState is the state gofn's "fold:N" keeps per key
// (plugins/pool/testdata/gofn), and the output of each event: the state
// after it.
type foldState struct {
	N    int `json:"n"`
	Sum  int `json:"sum"`
	Last int `json:"last"`
	Bad  int `json:"bad"`
}

// foldRig is a kfake broker, n keyed "fold:i" events on <project>.in, and
// the config of a pool whose function "fold" (state keyed by the record
// key) folds them into <project>.out.
type foldRig struct {
	cluster *kfake.Cluster
	addr    string
	cl      *kgo.Client
	cfgPath string
	project string
	group   string
	n, keys int
}

func newFoldRig(t *testing.T, project string, n, keys int, exactlyOnce bool) *foldRig {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	r := &foldRig{cluster: cluster, addr: cluster.ListenAddrs()[0], project: project, n: n, keys: keys,
		group: "butter." + project + ".fold." + project + ".in"}
	r.cl, err = kgo.NewClient(kgo.SeedBrokers(r.addr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cl.Close)
	ctx := context.Background()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(r.cl), []broker.Topic{{Name: project + ".in", Partitions: 6}, {Name: project + ".out", Partitions: 6}}); err != nil {
		t.Fatal(err)
	}
	gofn, _ := filepath.Abs(filepath.Join(e2etest.Root(), "plugins", "pool", "testdata", "gofn"))
	r.cfgPath = writePoolConfig(t, pool.Config{Project: project, Pool: "p", Functions: []pool.FunctionConfig{{
		Name: "fold", Runtime: "go", Bundle: gofn, Timeout: "10s", Memory: 64, MaxInstances: 2, Concurrency: 1,
		Output: project + ".out",
		State:  &pool.StateConfig{Key: pool.StateKeyRecord},
		Streams: []pool.StreamTrigger{{Stream: project + ".in", Group: r.group, Offset: "first",
			ExactlyOnce: exactlyOnce}},
	}}})
	var recs []*kgo.Record
	for i := range n {
		id := fmt.Sprintf("e-%05d", i)
		recs = append(recs, broker.NewEvent(project+".in", []byte(r.key(i)), []byte("fold:"+strconv.Itoa(i)), id, "test", "test"))
	}
	if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *foldRig) key(i int) string { return fmt.Sprintf("k%02d", i%r.keys) }

// committed reports whether the pool's group has committed every input
// event's offset.
func (r *foldRig) committed(ctx context.Context) bool {
	adm := kadm.NewClient(r.cl)
	ends, err := adm.ListEndOffsets(ctx, r.project+".in")
	if err != nil {
		return false
	}
	offs, err := adm.FetchOffsets(ctx, r.group)
	if err != nil {
		return false
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := offs.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
			done = false
		}
	})
	return done
}

// readAll reads topic from its start to its end, as a read_committed
// consumer (or read_uncommitted), once nothing is left open on it.
func (r *foldRig) readAll(t *testing.T, topic string, committed bool) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(r.cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	pos := map[int32]int64{}
	for {
		done := true
		for p, end := range want {
			if pos[p] < end {
				done = false
			}
		}
		if done {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: only reached %v of %v", topic, pos, want)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			pos[rec.Partition] = rec.Offset + 1
			if !rec.Attrs.IsControl() {
				out = append(out, rec)
			}
		})
	}
}

// checkOutputs checks each output against the sequential fold of its key's
// events up to it: the state it reports must be exactly that.
// It returns the outputs per event id.
func (r *foldRig) checkOutputs(t *testing.T, outs []*kgo.Record) map[string]int {
	t.Helper()
	seen := map[string]int{}
	want := map[string]foldState{}
	for i := range r.n {
		k := r.key(i)
		s, ok := want[k]
		if !ok {
			s = foldState{Last: -1}
		}
		s.N, s.Sum, s.Last = s.N+1, s.Sum+i, i
		want[fmt.Sprintf("e-%05d", i)] = s
		want[k] = s
	}
	for _, rec := range outs {
		// An output's own id derives from its input's (docs/events.md,
		// "Ids"), which ce_inputid names.
		id := broker.Header(rec, inputID)
		if own := broker.Header(rec, broker.HeaderID); own != id+"/fold/output/0" {
			t.Errorf("output of %s has the id %q, want %s/fold/output/0", id, own, id)
		}
		seen[id]++
		var got foldState
		if err := json.Unmarshal(rec.Value, &got); err != nil {
			t.Fatalf("output of %s is %q: %v", id, rec.Value, err)
		}
		if seen[id] == 1 && got != want[id] {
			t.Errorf("output of %s (key %s) is %+v; the sequential fold gives %+v", id, rec.Key, got, want[id])
		}
	}
	return seen
}

// inputID is the header naming the input an output derives from.
const inputID = "ce_inputid"

// changelog reads the function's state changelog read_committed: the last
// state of each key.
func (r *foldRig) changelog(t *testing.T) map[string]foldState {
	t.Helper()
	states := map[string]foldState{}
	for _, rec := range r.readAll(t, pool.StateTopic(r.project, "fold"), true) {
		var s foldState
		if err := json.Unmarshal(rec.Value, &s); err != nil {
			t.Fatalf("state of %s is %q: %v", rec.Key, rec.Value, err)
		}
		states[string(rec.Key)] = s
	}
	return states
}

// TestExactlyOnceCrashes: 10,000 keyed events through a function with
// state and exactly_once = true, while its pool process is SIGKILLed at
// three random moments. A read_committed reader of the output then finds
// every event's output once (no duplicate, no gap), each output the state
// its key's sequential fold gives at that event, and the committed
// changelog holds the fold of every event of each key: no state change
// applied twice, none lost.
func TestExactlyOnceCrashes(t *testing.T) {
	const n, keys = 10000, 50
	r := newFoldRig(t, "x", n, keys, true)
	ctx := context.Background()

	// Follow the read_committed output, to time the kills.
	var handled atomic.Int64
	fctx, stopFollow := context.WithCancel(ctx)
	follower, err := kgo.NewClient(kgo.SeedBrokers(r.addr), kgo.ConsumeTopics("x.out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	var followed sync.WaitGroup
	followed.Add(1)
	go func() {
		defer followed.Done()
		for fctx.Err() == nil {
			handled.Add(int64(follower.PollFetches(fctx).NumRecords()))
		}
	}()
	defer func() {
		stopFollow()
		followed.Wait()
		follower.Close()
	}()

	start := time.Now()
	// The same instance ID across restarts, as $NOMAD_ALLOC_NAME is for a
	// task restarted or replaced: the new pool fences the killed one.
	p := startPool(t, r.cfgPath, r.addr, "-instance-id", "x-1")
	kills := []int64{int64(rand.IntN(2000) + 500), int64(rand.IntN(2000) + 3500), int64(rand.IntN(2000) + 6500)}
	for i, at := range kills {
		e2etest.WaitFor(t, 3*time.Minute, fmt.Sprintf("%d committed outputs before kill %d", at, i+1), func() bool { return handled.Load() >= at })
		p.kill()
		p = startPool(t, r.cfgPath, r.addr, "-instance-id", "x-1")
	}
	e2etest.WaitFor(t, 5*time.Minute, "every event committed", func() bool { return r.committed(ctx) })
	took := time.Since(start)

	outs := r.readAll(t, "x.out", true)
	seen := r.checkOutputs(t, outs)
	for i := range n {
		if id := fmt.Sprintf("e-%05d", i); seen[id] != 1 {
			t.Errorf("event %s has %d outputs; exactly-once wants 1", id, seen[id])
		}
	}
	if len(outs) != n {
		t.Errorf("%d outputs for %d events", len(outs), n)
	}
	states := r.changelog(t)
	for k := range keys {
		key := r.key(k)
		want := foldState{Last: -1}
		for i := k; i < n; i += keys {
			want.N, want.Sum, want.Last = want.N+1, want.Sum+i, i
		}
		if states[key] != want {
			t.Errorf("state of %s is %+v; the sequential fold of its events is %+v", key, states[key], want)
		}
	}
	// Aborted records are there for a read_uncommitted reader: the kills
	// did cut transactions short (the test would not test much if not).
	raw := r.readAll(t, "x.out", false)
	t.Logf("10,000 events, pool SIGKILLed after %v committed outputs, %s: %d outputs read_committed, %d records written in all (aborted ones included)", kills, took.Round(time.Second), len(outs), len(raw))
}

// TestAtLeastOnceStateCrash: a function with state, at least once (no
// exactly_once), its pool SIGKILLed at the moment it commits its offsets:
// after its events' state changes and outputs were acknowledged, before
// the commit. What docs/events.md says a crash repeats is then exactly
// what happens: the uncommitted events run again, their outputs appear
// twice (the same ce_id), and their state changes are applied twice (a
// repeated event folds into the state it already changed); nothing is
// lost, and the state is the fold of every call that ran, in order, none
// torn.
func TestAtLeastOnceStateCrash(t *testing.T) {
	const n, keys = 2000, 20
	r := newFoldRig(t, "a", n, keys, false)
	ctx := context.Background()

	// Kill the pool when it commits its offsets after ≥ 500 events.
	var p atomic.Pointer[poolProc]
	var armed atomic.Bool
	killed := make(chan struct{})
	r.cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		if oc := req.(*kmsg.OffsetCommitRequest); oc.Group != r.group || !armed.Load() {
			return nil, nil, false
		}
		armed.Store(false)
		_ = syscall.Kill(-p.Load().cmd.Process.Pid, syscall.SIGKILL)
		close(killed)
		return nil, fmt.Errorf("pool killed at its commit"), true
	})
	p.Store(startPool(t, r.cfgPath, r.addr))
	outCl, err := kgo.NewClient(kgo.SeedBrokers(r.addr), kgo.ConsumeTopics("a.out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer outCl.Close()
	outputs := 0
	e2etest.WaitFor(t, 2*time.Minute, "500 outputs", func() bool {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		outputs += outCl.PollFetches(pctx).NumRecords()
		return outputs >= 500
	})
	armed.Store(true)
	select {
	case <-killed:
	case <-time.After(time.Minute):
		t.Fatal("the pool committed no offsets within a minute")
	}
	p.Load().kill()
	p.Store(startPool(t, r.cfgPath, r.addr))
	e2etest.WaitFor(t, 3*time.Minute, "every event committed", func() bool { return r.committed(ctx) })

	outs := r.readAll(t, "a.out", false)
	// Per key, outputs come in the order their calls ran: the k-th
	// output of a key reports the k-th application of its state.
	byKey := map[string][]foldState{}
	seen := map[string]int{}
	for _, rec := range outs {
		var s foldState
		if err := json.Unmarshal(rec.Value, &s); err != nil {
			t.Fatalf("output %q: %v", rec.Value, err)
		}
		byKey[string(rec.Key)] = append(byKey[string(rec.Key)], s)
		seen[broker.Header(rec, inputID)]++
	}
	repeated := 0
	repeats := map[string]int{} // per key
	for i := range n {
		id := fmt.Sprintf("e-%05d", i)
		switch c := seen[id]; {
		case c == 0:
			t.Errorf("event %s was lost", id)
		case c > 2:
			t.Errorf("event %s ran %d times; one crash repeats an event once at most", id, c)
		case c == 2:
			repeated++
			repeats[r.key(i)]++
		}
	}
	if repeated == 0 {
		t.Fatal("no event was repeated: the pool was not killed between its state writes and its commit")
	}
	states := r.changelog(t)
	for key, ss := range byKey {
		for k, s := range ss {
			if s.N != k+1 {
				t.Fatalf("key %s: output %d reports %d applications of the state; each call that ran applies it once", key, k+1, s.N)
			}
		}
		// The state left is the last output's: each repeated event
		// applied once more. The fold sees the replay go back in the
		// key's sequence once (Bad).
		last := ss[len(ss)-1]
		if states[key] != last {
			t.Errorf("key %s: the changelog holds %+v, the last output says %+v", key, states[key], last)
		}
		wantBad := 0
		if repeats[key] > 0 {
			wantBad = 1
		}
		if last.N != n/keys+repeats[key] || last.Bad != wantBad {
			t.Errorf("key %s: state %+v after %d events, %d of them repeated", key, last, n/keys, repeats[key])
		}
	}
	t.Logf("%d events, pool killed at its commit after %d outputs: %d events repeated, each output and state change repeated once", n, outputs, repeated)
}
