package pool_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/plugins/pool"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestMQTTConnectors runs a `source "mqtt"` and a `sink "mqtt"` in a pool
// against a real Mosquitto and the embedded Kafka-protocol broker: readings
// published with the real mosquitto_pub reach the source's stream keyed by
// their topic's device level, with the MQTT topic and QoS in the record's
// headers; records of a stream are published by the sink to the topic
// their key gives, received by a Paho subscriber. Mosquitto is restarted
// midway, with records and readings sent while it is down or coming back:
// nothing is lost (the source reconnects and resubscribes; the sink's
// publishes fail and are retried until the broker takes them).
func TestMQTTConnectors(t *testing.T) {
	mq := mqtttest.Start(t)
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "m.readings", Partitions: 1}, broker.Topic{Name: "m.alerts", Partitions: 1})
	source := pool.FunctionConfig{
		Name: "readings-in", Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output:  "m.readings",
		Options: map[string]string{"address": mq.Address, "topics": "sensors/+/reading", "key": "2", "qos": "1"},
	}
	sink := pool.FunctionConfig{
		Name: "alerts-out", Runtime: "sink.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"address": mq.Address, "topic": "alerts/{key}", "qos": "1"},
		Streams: []pool.StreamTrigger{{Stream: "m.alerts", Group: "butter.test.alerts-out.m.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 100, Backoff: "100ms", MaxBackoff: "500ms"},
	}
	p, srv := start(t, []pool.FunctionConfig{source, sink})

	// The test's own subscriber: a persistent session, so the broker keeps
	// its subscription and queues its messages across the restart.
	var mu sync.Mutex
	received := map[string]string{} // payload -> topic
	o := paho.NewClientOptions().AddBroker(mq.Address).SetClientID("butter-test-sub").SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe("alerts/#", 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			received[string(m.Payload())] = m.Topic()
			mu.Unlock()
		})
	})
	sub := paho.NewClient(o)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the test's subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	eventually(t, 10*time.Second, "the test's subscription", func() bool { return sub.IsConnectionOpen() })

	startStreams := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.StartStreams(ctx, dev.Config()); err != nil {
			t.Fatal(err)
		}
	}
	startStreams()
	// The source subscribes once connected: wait for its subscription
	// in mosquitto's log before publishing (a QoS 1 message to a topic
	// no one subscribes to is dropped).
	eventually(t, 20*time.Second, "the source's subscription", func() bool {
		return strings.Contains(mq.Log(), "$share/butter-test-readings-in/sensors/+/reading")
	})

	mq.Publish("sensors/d1/reading", readings("d1", 0, 10)...)
	keyed(t, cl, "m.alerts", "d1", events("alert", 0, 10)...)
	got := readAll(t, dev.Addr, "m.readings", 10)
	for i, r := range got {
		if want := fmt.Sprintf(`{"device":"d1","seq":%d}`, i); string(r.Value) != want || string(r.Key) != "d1" ||
			broker.Header(r, "mqtt_topic") != "sensors/d1/reading" || broker.Header(r, "mqtt_qos") != "1" || broker.Header(r, "ce_type") != "butter.mqtt.message" {
			t.Fatalf("reading %d: %s (key %q, topic %q, qos %q, type %q), want %s keyed d1", i, r.Value, r.Key, broker.Header(r, "mqtt_topic"), broker.Header(r, "mqtt_qos"), broker.Header(r, "ce_type"), want)
		}
	}
	eventually(t, 20*time.Second, "the first 10 alerts published", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= 10
	})

	// The broker restarts; alerts are produced while it is down.
	mq.Stop()
	keyed(t, cl, "m.alerts", "d2", events("alert", 10, 20)...)
	// The sink fails against the stopped broker (and retries) before it
	// comes back.
	eventually(t, 20*time.Second, "the sink failing while the broker is down", func() bool {
		n, _ := scrape(t, srv, "butter_invocation_errors_total", `function="alerts-out"`)
		return n > 0
	})
	mq.Restart()
	eventually(t, 30*time.Second, "the source subscribed again", func() bool {
		return strings.Count(mq.Log(), " $share/butter-test-readings-in/sensors/+/reading") >= 2
	})
	mq.Publish("sensors/d1/reading", readings("d1", 10, 20)...)
	got = readAll(t, dev.Addr, "m.readings", 20)
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for _, want := range readings("d1", 0, 20) {
		if seen[want] == 0 {
			t.Errorf("reading %s did not reach the stream", want)
		}
	}
	eventually(t, 60*time.Second, "all 20 alerts published", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= 20
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range events("alert", 0, 20) {
		key := "d1"
		if e >= "alert-0010" {
			key = "d2"
		}
		if topic, ok := received[e]; !ok || topic != "alerts/"+key {
			t.Errorf("alert %s: received on %q (%v), want alerts/%s", e, topic, ok, key)
		}
	}
}

func readings(device string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf(`{"device":%q,"seq":%d}`, device, i))
	}
	return out
}
