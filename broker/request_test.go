package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRequesterOutcomes: against the embedded broker over TCP, a
// Requester's call gets its reply, a typed error reply as a *proto.Error,
// a Timeout when nothing answers by the deadline, and, when its caller
// cancels it while it waits, the cancellation (context.Canceled), not a
// Timeout.
func TestRequesterOutcomes(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ConsumeTopics("req"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), []broker.Topic{{Name: "req", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	r, err := broker.NewRequester(ctx, dev.Config(), "replies.test")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The responder answers "ok" with OK, "fail" with a typed error, and
	// leaves anything else unanswered; it reports each request it read.
	seen := make(chan string, 16)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rctx.Err() == nil {
			cl.PollFetches(rctx).EachRecord(func(rec *kgo.Record) {
				var reply *kgo.Record
				switch string(rec.Value) {
				case "ok":
					reply = broker.Reply(rec, []byte("OK"), "", "")
				case "fail":
					reply = broker.Reply(rec, nil, proto.PreconditionFailed, "not a number")
				}
				if reply != nil {
					_ = cl.ProduceSync(rctx, reply).FirstErr()
				}
				seen <- string(rec.Value)
			})
		}
	}()
	defer func() { stop(); <-done }()

	if out, err := r.Call(ctx, "req", nil, []byte("ok"), time.Now().Add(time.Minute)); err != nil || string(out) != "OK" {
		t.Errorf("ok: %q, %v; want OK", out, err)
	}
	_, err = r.Call(ctx, "req", nil, []byte("fail"), time.Now().Add(time.Minute))
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Type != proto.PreconditionFailed || pe.Message != "not a number" {
		t.Errorf("fail: %v; want PreconditionFailed: not a number", err)
	}
	_, err = r.Call(ctx, "req", nil, []byte("silent"), time.Now().Add(300*time.Millisecond))
	if !errors.As(err, &pe) || pe.Type != proto.Timeout {
		t.Errorf("unanswered: %v; want a Timeout", err)
	}

	// Cancelled once the responder has read the request: the call was
	// sent, and its caller gave up long before the deadline.
	for v := range seen {
		if v == "silent" {
			break
		}
	}
	cctx, ccancel := context.WithCancel(ctx)
	go func() {
		for v := range seen {
			if v == "cancelled" {
				ccancel()
				return
			}
		}
	}()
	start := time.Now()
	_, err = r.Call(cctx, "req", nil, []byte("cancelled"), time.Now().Add(time.Minute))
	if !errors.Is(err, context.Canceled) || errors.As(err, &pe) {
		t.Errorf("cancelled: %v (%T); want an error wrapping context.Canceled, not a typed error", err, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cancelled: returned after %s, not when cancelled", d)
	}
}
