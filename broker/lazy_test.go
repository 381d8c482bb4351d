package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/testport"
	"github.com/hashicorp/go-hclog"
)

func TestLazyRequester(t *testing.T) {
	ctx := context.Background()
	none := broker.NoKafka("no Kafka here: set -kafka-brokers")
	if _, err := none.Call(ctx, "t", nil, nil, time.Now().Add(time.Second)); err == nil || !strings.Contains(err.Error(), "no Kafka here") {
		t.Errorf("NoKafka call: %v, want its reason", err)
	}
	none.Close()

	// Nothing listens on the port yet: calls fail, saying so, and Close
	// ends the retries.
	l := broker.NewLazyRequester(ctx, hclog.NewNullLogger(), broker.Config{Brokers: []string{testport.Addr(t)}}, "butter._replies.test")
	if _, err := l.Call(ctx, "t", nil, nil, time.Now().Add(time.Second)); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("call before connecting: %v, want 'not connected'", err)
	}
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not stop the connection attempts")
	}

	// With a broker, it connects.
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	l = broker.NewLazyRequester(ctx, hclog.NewNullLogger(), dev.Config(), "butter._replies.test")
	defer l.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !l.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("never connected to the dev broker")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
