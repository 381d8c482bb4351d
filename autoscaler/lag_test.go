package autoscaler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/nomadtest"
	"github.com/butterfn/butter/jobs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagFromBroker reads consumer lag through kadm from the embedded
// broker over TCP: records produced past a group's commit are the lag;
// a commit at the end takes it to zero; with the broker gone, the last
// reading stays, with its age, and the failure is named. A group at zero
// allocations (no service registered in Nomad) still has its lag read.
func TestLagFromBroker(t *testing.T) {
	agent := nomadtest.Start(t)
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			dev.Close()
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Config().Brokers...), kgo.RequestRetries(1), kgo.RetryTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	const topic, group = "lagged.in", "butter.lagged.f.in"
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(at int64) {
		t.Helper()
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: at})
		if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
			t.Fatal(err)
		}
	}
	commit(2)

	clock := newClock()
	sig := &autoscaler.PoolSignals{Nomad: agent.Client, Kafka: adm, Clock: clock}
	g := autoscaler.Group{Target: autoscaler.Target{Project: "lagged", Job: "butter-lagged", Group: "main"}, Policy: jobs.ScalingPolicy{Enabled: true, Max: 3, TargetLag: 10, ConsumerGroups: []string{group}}}
	l, err := sig.Load(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if l.Lag != 5 || l.Allocations != 0 || !l.At.Equal(clock.Now()) || len(l.Problems) != 0 {
		t.Errorf("load with 7 records and a commit at 2: %+v; want lag 5, no allocations, read now", l)
	}
	commit(7)
	clock.advance(time.Second)
	if l, _ := sig.Load(ctx, g); l.Lag != 0 {
		t.Errorf("lag after a commit at the end: %d", l.Lag)
	}
	readAt := clock.Now()

	dev.Close()
	closed = true
	clock.advance(time.Minute)
	l, err = sig.Load(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if !l.At.Equal(readAt) || len(l.Problems) != 1 || !strings.HasPrefix(l.Problems[0], "consumer lag: ") {
		t.Errorf("load with the broker gone: %+v; want the last reading, at %s, and the problem", l, readAt)
	}
}
