package autoscaler_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagOfUncommittedGroup: a consumer group that never committed (its
// pool never ran) has as lag the records from its trigger's offset, read
// from the embedded broker over TCP: all of them from "first", those from
// an offset or a time on, none from "latest". Once the group commits, its
// committed lag counts instead; and the loop wakes such a pool from zero
// allocations on it.
func TestLagOfUncommittedGroup(t *testing.T) {
	agent := nomadtest.Start(t)
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	// Records go to the partition the test names.
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Config().Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	const topic = "fresh.in"
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	produce := func(p int32, n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 4)
	// Records are stamped in milliseconds when produced: mid is the next
	// millisecond boundary, and the next records are produced after it.
	mid := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	for !time.Now().After(mid) {
		time.Sleep(time.Millisecond)
	}
	produce(0, 2)
	produce(1, 3)

	sig := &autoscaler.PoolSignals{Nomad: agent.Client, Kafka: adm}
	load := func(streams ...jobs.ConsumedStream) int64 {
		t.Helper()
		var groups []string
		for _, st := range streams {
			groups = append(groups, st.Group)
		}
		g := autoscaler.Group{Target: autoscaler.Target{Project: "fresh", Job: "butter-fresh", Group: "main"},
			Policy: jobs.ScalingPolicy{Enabled: true, Max: 3, TargetLag: 10, ConsumerGroups: groups, Streams: streams}}
		l, err := sig.Load(ctx, g)
		if err != nil || len(l.Problems) > 0 {
			t.Fatalf("load: %+v %v", l, err)
		}
		return l.Lag
	}
	for _, c := range []struct {
		offset string
		want   int64
	}{
		{"first", 9},
		{"latest", 0},
		{"3", 3}, // from offset 3 on each partition: 3 records on partition 0, none of the 3 on partition 1
		{mid.UTC().Format(time.RFC3339Nano), 2 + 3},
	} {
		if got := load(jobs.ConsumedStream{Group: "butter.fresh.f-" + c.offset[:1] + ".in", Topic: topic, Offset: c.offset}); got != c.want {
			t.Errorf("offset %s, never committed: lag %d, want %d", c.offset, got, c.want)
		}
	}
	// Committed on one partition: kadm's lag counts (the other partition
	// from its start), not the trigger's offset again.
	const group = "butter.fresh.g.in"
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5})
	if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	if got := load(jobs.ConsumedStream{Group: group, Topic: topic, Offset: "latest"}); got != 1+3 {
		t.Errorf("committed at 5 of 6 on partition 0: lag %d", got)
	}
	// The loop wakes a pool at zero allocations on an uncommitted lag.
	n := &fakeNomad{groups: []*autoscaler.Group{{Target: autoscaler.Target{Project: "fresh", Job: "butter-fresh", Group: "main"}, Count: 0,
		Policy: jobs.ScalingPolicy{Enabled: true, Min: 0, Max: 3, TargetLag: 10, ConsumerGroups: []string{"butter.fresh.new.in"},
			Streams: []jobs.ConsumedStream{{Group: "butter.fresh.new.in", Topic: topic, Offset: "first"}}}}}, refuse: map[string]error{}}
	a := autoscaler.New(autoscaler.Config{Scaler: n, Signals: sig, Store: &autoscaler.MemStore{}})
	a.Step(ctx)
	if c := n.count("fresh/main"); c != 1 {
		t.Errorf("count %d with 9 records for a group that never committed; want 1", c)
	}
}
