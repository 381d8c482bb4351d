package pool_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
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
	received, sub := subscribeAlerts(t, paho.NewClientOptions().AddBroker(mq.Address).SetClientID("butter-test-sub").SetCleanSession(false).
		SetMaxReconnectInterval(time.Second))
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
		return received.count() >= 10
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
		return received.count() >= 20
	})
	for _, e := range events("alert", 0, 20) {
		key := "d1"
		if e >= "alert-0010" {
			key = "d2"
		}
		if topic, ok := received.topic(e); !ok || topic != "alerts/"+key {
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

// TestMQTTOverTLS runs a `source "mqtt"` and a `sink "mqtt"` against a
// real Mosquitto that listens over TLS only and requires a client
// certificate from its own CA: each trusts that CA (tls_ca) and presents
// the client certificate (tls_cert) with its key from a secret (tls_key).
// Readings published with mosquitto_pub (over TLS, with the certificate)
// reach the stream; records of another stream reach a Paho subscriber
// over TLS through the sink. A source given the CA but no client
// certificate never subscribes: the broker refuses it.
func TestMQTTOverTLS(t *testing.T) {
	mq := mqtttest.StartTLS(t)
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "s.readings", Partitions: 1}, broker.Topic{Name: "s.alerts", Partitions: 1})
	tlsOpts := func(extra map[string]string) map[string]string {
		o := map[string]string{"address": mq.Address, "qos": "1", "tls_ca": mq.TLS.CA, "tls_cert": mq.TLS.ClientCert, "tls_key": "MQTT_KEY"}
		maps.Copy(o, extra)
		return o
	}
	env := map[string]string{"MQTT_KEY": mq.TLS.ClientKey}
	source := pool.FunctionConfig{
		Name: "readings-in", Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output: "s.readings", Env: env,
		Options: tlsOpts(map[string]string{"topics": "sensors/+/reading", "key": "2"}),
	}
	certless := pool.FunctionConfig{
		Name: "certless-in", Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output:  "s.readings",
		Options: map[string]string{"address": mq.Address, "qos": "1", "tls_ca": mq.TLS.CA, "topics": "other/#"},
	}
	sink := pool.FunctionConfig{
		Name: "alerts-out", Runtime: "sink.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(), Env: env,
		Options: tlsOpts(map[string]string{"topic": "alerts/{key}"}),
		Streams: []pool.StreamTrigger{{Stream: "s.alerts", Group: "butter.test.alerts-out.s.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 50, Backoff: "100ms", MaxBackoff: "500ms"},
	}
	p, _ := start(t, []pool.FunctionConfig{source, certless, sink})

	pair, err := tls.X509KeyPair([]byte(mq.TLS.ClientCert), []byte(mq.TLS.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(mq.TLS.CA))
	received, _ := subscribeAlerts(t, paho.NewClientOptions().AddBroker(mq.Address).SetClientID("butter-test-tls-sub").
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the source's subscription over TLS", func() bool {
		return strings.Contains(mq.Log(), "$share/butter-test-readings-in/sensors/+/reading")
	})
	mq.Publish("sensors/d1/reading", readings("d1", 0, 5)...)
	got := readAll(t, dev.Addr, "s.readings", 5)
	for i, r := range got {
		if want := fmt.Sprintf(`{"device":"d1","seq":%d}`, i); string(r.Value) != want || string(r.Key) != "d1" {
			t.Errorf("reading %d: %s keyed %q, want %s keyed d1", i, r.Value, r.Key, want)
		}
	}
	keyed(t, cl, "s.alerts", "d1", events("alert", 0, 5)...)
	eventually(t, 20*time.Second, "5 alerts published over TLS", func() bool {
		return received.count() >= 5
	})
	eventually(t, 20*time.Second, "the broker refusing the source without a client certificate", func() bool {
		return strings.Contains(mq.Log(), "peer did not return a certificate")
	})
	if strings.Contains(mq.Log(), "other/#") {
		t.Errorf("the source without a client certificate subscribed:\n%s", mq.Log())
	}
}

// alerts are the messages a test's subscriber received: payload to topic.
type alerts struct {
	mu  sync.Mutex
	got map[string]string
}

func (a *alerts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func (a *alerts) topic(payload string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	topic, ok := a.got[payload]
	return topic, ok
}

// subscribeAlerts connects a Paho client with o (reconnecting, and
// subscribing again at each connection) to alerts/# at QoS 1, and
// records what it receives.
func subscribeAlerts(t *testing.T, o *paho.ClientOptions) (*alerts, paho.Client) {
	t.Helper()
	a := &alerts{got: map[string]string{}}
	o.SetAutoReconnect(true).SetConnectRetry(true)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe("alerts/#", 1, func(_ paho.Client, m paho.Message) {
			a.mu.Lock()
			a.got[string(m.Payload())] = m.Topic()
			a.mu.Unlock()
		})
	})
	sub := paho.NewClient(o)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the test's subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	return a, sub
}
