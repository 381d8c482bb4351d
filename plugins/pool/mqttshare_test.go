package pool_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/plugins/pool"
)

// TestMQTTSourceShared runs one `source "mqtt"` in two pools, as two
// allocations of its group would (each with its own NOMAD_ALLOC_ID, hence
// its own client id), against a real Mosquitto: they share the
// subscription, so readings published with mosquitto_pub are split
// between them and each reaches the stream once. Then one pool stops, as
// a scale-in stops an allocation, and the readings published after it
// all reach the stream through the other.
func TestMQTTSourceShared(t *testing.T) {
	mq := mqtttest.Start(t)
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "sh.readings", Partitions: 1})
	source := pool.FunctionConfig{
		Name: "readings-in", Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1,
		Output:  "sh.readings",
		Options: map[string]string{"address": mq.Address, "topics": "sensors/+/reading", "key": "2", "qos": "1"},
	}
	const filter = " $share/butter-test-readings-in/sensors/+/reading"
	var pools []*pool.Pool
	var srvs []*httptest.Server
	for i, alloc := range []string{"alloc-a", "alloc-b"} {
		src := source
		src.Bundle = t.TempDir()
		p, srv := start(t, []pool.FunctionConfig{src})
		t.Setenv("NOMAD_ALLOC_ID", alloc) // read when the source starts
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.StartStreams(ctx, dev.Config())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "pool "+alloc+"'s subscription", func() bool {
			return strings.Count(mq.Log(), filter) >= i+1
		})
		pools = append(pools, p)
		srvs = append(srvs, srv)
	}
	if log := mq.Log(); !strings.Contains(log, "butter-test-readings-in-alloc-a") || !strings.Contains(log, "butter-test-readings-in-alloc-b") {
		t.Fatalf("the two pools' client ids are not in Mosquitto's log:\n%s", log)
	}

	mq.Publish("sensors/d1/reading", readings("d1", 0, 40)...)
	eachOnce(t, dev.Addr, "sh.readings", readings("d1", 0, 40))
	for i, srv := range srvs {
		if n := sourced(t, srv); n == 0 || n == 40 {
			t.Errorf("pool %d produced %v of the 40 readings: the subscription was not shared", i, n)
		}
	}

	// Pool a stops (a scale-in): what is published after it goes through b.
	pools[0].Close()
	mq.Publish("sensors/d2/reading", readings("d2", 0, 40)...)
	eachOnce(t, dev.Addr, "sh.readings", append(readings("d1", 0, 40), readings("d2", 0, 40)...))
	if a, b := sourced(t, srvs[0]), sourced(t, srvs[1]); a+b != 80 {
		t.Errorf("the pools produced %v and %v readings, want 80 in all (each once)", a, b)
	}
}

// eachOnce reads topic until it holds as many records as want, and checks
// that each of want is there once.
func eachOnce(t *testing.T, addr, topic string, want []string) {
	t.Helper()
	got := readAll(t, addr, topic, len(want))
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("%s is in %s %d times, want once", w, topic, seen[w])
		}
	}
}

// sourced reads butter_source_messages_total of the pool served by srv.
func sourced(t *testing.T, srv *httptest.Server) float64 {
	t.Helper()
	n, _ := scrape(t, srv, "butter_source_messages_total", `function="readings-in"`)
	return n
}
