package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDevRestartKeepsEventsAndOffsets: the embedded broker, restarted on
// the same data dir, still holds every event and every committed offset.
func TestDevRestartKeepsEventsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	dev, err := broker.StartDev(0, dir)
	if err != nil {
		t.Fatal(err)
	}
	port := dev.Port()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	if err := broker.EnsureTopics(ctx, adm, []broker.Topic{{Name: "events", Partitions: 2, Retention: 7 * 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := broker.EnsureTopics(ctx, adm, []broker.Topic{{Name: "events", Partitions: 2}}); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	for i := range 50 {
		r := broker.NewEvent("events", []byte(fmt.Sprint(i%5)), []byte(fmt.Sprint(i)), fmt.Sprint(i), "test", "test")
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "events", Partition: 0, At: 7})
	if _, err := adm.CommitOffsets(ctx, "g", offs); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	dev.Close()

	dev, err = broker.StartDev(port, dir)
	if err != nil {
		t.Fatalf("restart on the same data dir: %v", err)
	}
	defer dev.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	for len(seen) < 50 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if broker.Header(r, broker.HeaderSpecVersion) != "1.0" {
				t.Errorf("record %s lost its CloudEvents headers", r.Value)
			}
			seen[string(r.Value)] = true
		})
	}
	if len(seen) != 50 {
		t.Fatalf("after the restart %d of 50 events remain", len(seen))
	}
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup("events", 0); !ok || o.At != 7 {
		t.Errorf("committed offset after the restart = %+v, want 7", o)
	}
}
