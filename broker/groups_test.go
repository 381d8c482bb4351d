package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupSessionLimits reads the limits a real broker (kfake over TCP)
// states. They are set as broker configs: kfake's GroupMinSessionTimeout
// option applies at join but does not show in DescribeConfigs.
func TestGroupSessionLimits(t *testing.T) {
	c, err := kfake.NewCluster(kfake.Ports(0), kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "20000"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := broker.GroupSessionLimits(ctx, kadm.NewClient(cl), "g1", "g2")
	if err != nil {
		t.Fatal(err)
	}
	want := broker.SessionLimits{Min: 20 * time.Second, Max: 5 * time.Minute}
	if got["g1"] != want || got["g2"] != want {
		t.Errorf("limits %v, want %v for both groups", got, want)
	}
}
