// Package mqtt is Butter's MQTT connector: a source that subscribes to
// topic filters on an MQTT broker and hands each message on (the pool
// produces it to a stream), and a sink that publishes a stream's records.
// It speaks MQTT 3.1.1 through Eclipse Paho (github.com/eclipse/
// paho.mqtt.golang).
//
// Delivery is at least once: the source acknowledges a QoS 1 or 2
// message only once its handler returned (the record is in Kafka), with
// a persistent session (clean session off), so a message the pool did not
// take is sent again when it reconnects; the sink's publish of QoS 1 or 2
// returns once the broker acknowledged it.
//
// Neighbours: hcl/spec decodes the source and sink blocks (sink.go);
// plugins/runtime runs the sink; plugins/pool runs the source.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/connectors/tlsconf"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/hashicorp/go-hclog"
)

// Config is a connection's settings, from a source's or sink's options.
type Config struct {
	// Address is the broker: tcp://host:1883, ssl://host:8883, ws://...
	Address  string
	ClientID string
	Username string
	Password string
	QoS      byte
	// Timeout bounds connecting and each publish or subscribe.
	Timeout time.Duration
	// TLS is the TLS configuration for ssl://, tls://, mqtts:// and wss://
	// brokers: nil for the system's roots and no client certificate.
	TLS *tls.Config
}

// Option names in a function's options (hcl/spec/sink.go writes them).
const (
	OptAddress  = "address"
	OptClientID = "client_id"
	OptUsername = "username"
	OptPassword = "password" // the name of the secret holding it
	OptQoS      = "qos"
	OptTopic    = "topic"  // a sink's topic template
	OptTopics   = "topics" // a source's filters, comma-separated
	OptKey      = "key"    // a source's key: the topic level (1-based), 0 for none
	OptRetain   = "retain"
	OptShare    = "share"         // a source's shared subscription group
	OptTLSCA    = tlsconf.OptCA   // PEM certificates of the CAs to trust
	OptTLSCert  = tlsconf.OptCert // the client's PEM certificate
	OptTLSKey   = tlsconf.OptKey  // the name of the secret holding its PEM key
)

// ConfigFrom reads a connection's settings from options, the password
// from env under the secret's name.
func ConfigFrom(opts, env map[string]string) (Config, error) {
	c := Config{Address: opts[OptAddress], ClientID: opts[OptClientID], Username: opts[OptUsername], Timeout: 10 * time.Second}
	if c.Address == "" {
		return c, errors.New("mqtt: no address")
	}
	if name := opts[OptPassword]; name != "" {
		v, ok := env[name]
		if !ok {
			return c, fmt.Errorf("mqtt: the password's secret %s has no value", name)
		}
		c.Password = v
	}
	tc, err := tlsconf.FromOptions(opts, env)
	if err != nil {
		return c, fmt.Errorf("mqtt: %w", err)
	}
	c.TLS = tc
	if q := opts[OptQoS]; q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 || n > 2 {
			return c, fmt.Errorf("mqtt: qos %q is not 0, 1 or 2", q)
		}
		c.QoS = byte(n)
	}
	return c, nil
}

func (c Config) options(clean bool) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(c.Address).SetClientID(c.ClientID).
		SetCleanSession(clean).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectTimeout(c.Timeout).SetWriteTimeout(c.Timeout).
		SetMaxReconnectInterval(5 * time.Second).SetOrderMatters(true)
	if c.Username != "" {
		o.SetUsername(c.Username).SetPassword(c.Password)
	}
	if c.TLS != nil {
		o.SetTLSConfig(c.TLS)
	}
	return o
}

// wait waits for a token within d.
func wait(t paho.Token, d time.Duration, what string) error {
	if !t.WaitTimeout(d) {
		return fmt.Errorf("mqtt: %s: no answer from the broker within %s", what, d)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("mqtt: %s: %w", what, err)
	}
	return nil
}

// Publisher publishes a sink's records.
type Publisher struct {
	cfg    Config
	client paho.Client
}

// NewPublisher connects to the broker (retrying in the background when
// it cannot be reached: a publish then fails until it can).
func NewPublisher(cfg Config) *Publisher {
	c := paho.NewClient(cfg.options(true))
	c.Connect() // with ConnectRetry, it keeps trying
	return &Publisher{cfg: cfg, client: c}
}

// Publish sends payload to topic and, for QoS 1 and 2, waits for the
// broker's acknowledgement (bounded by ctx and the timeout).
func (p *Publisher) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	if !p.client.IsConnectionOpen() {
		return fmt.Errorf("mqtt: not connected to %s", p.cfg.Address)
	}
	t := p.client.Publish(topic, p.cfg.QoS, retain, payload)
	d := p.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return wait(t, d, "publish to "+topic)
}

// Close disconnects.
func (p *Publisher) Close() { p.client.Disconnect(250) }

// Topic fills a sink's topic template: {key} is the record's key, {stream}
// its stream. A template that needs a key the record lacks is an error.
func Topic(template, key, stream string) (string, error) {
	if strings.Contains(template, "{key}") && key == "" {
		return "", fmt.Errorf("topic %q needs the record's key, and the record has none", template)
	}
	t := strings.ReplaceAll(template, "{key}", key)
	t = strings.ReplaceAll(t, "{stream}", stream)
	if strings.ContainsAny(t, "+#") {
		return "", fmt.Errorf("topic %q has a wildcard (+ or #): a message is published to one topic", t)
	}
	return t, nil
}

// Message is a message a source received.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	// Key is the topic level the source keys records by ("" for none).
	Key string
}

// Handler takes a source's message; the message is acknowledged once it
// returns nil. An error leaves it unacknowledged: the broker sends it
// again when the source reconnects.
type Handler func(ctx context.Context, m Message) error

// Subscriber is a running source.
type Subscriber struct {
	client  paho.Client
	log     hclog.Logger
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	shared  []string      // the shared subscriptions' filters, unsubscribed at Close
	timeout time.Duration // bounds the unsubscription and the drain after it
	closing atomic.Bool   // set by Close: a reconnection subscribes no more
	pending atomic.Int64  // messages received and not yet handled
	last    atomic.Int64  // when the last message was received (Unix ns)
}

// drainQuiet is how long Close waits, after the broker acknowledged its
// unsubscription, for a message to arrive before it takes the stream of
// messages sent before the unsubscription to have ended. The broker sends
// them before its acknowledgement, on the same connection; Paho may hand
// the last of them to the handler just after it completed the
// acknowledgement's token.
const drainQuiet = 300 * time.Millisecond

// Subscribe connects with a persistent session and subscribes to filters
// (again at every reconnection), under a shared subscription when share
// is set ($share/<share>/<filter>: the pools of one source split the
// messages), and calls h for each message. keyLevel (1-based) picks the
// topic level used as the key, 0 none. Close stops it.
func Subscribe(cfg Config, filters []string, share string, keyLevel int, h Handler, log hclog.Logger) (*Subscriber, error) {
	if len(filters) == 0 {
		return nil, errors.New("mqtt: no topic to subscribe to")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{log: log, cancel: cancel, timeout: cfg.Timeout}
	subs := map[string]byte{}
	for _, f := range filters {
		if share != "" {
			f = "$share/" + share + "/" + f
			s.shared = append(s.shared, f)
		}
		subs[f] = cfg.QoS
	}
	// Messages are handled one at a time, in order, off paho's own
	// goroutine (which must not block on Kafka).
	msgs := make(chan paho.Message, 256)
	o := cfg.options(false)
	o.SetAutoAckDisabled(true)
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		s.pending.Add(1)
		s.last.Store(time.Now().UnixNano())
		select {
		case msgs <- m:
		case <-ctx.Done():
			s.pending.Add(-1)
		}
	})
	o.SetOnConnectHandler(func(c paho.Client) {
		if s.closing.Load() {
			return
		}
		if err := wait(c.SubscribeMultiple(subs, nil), cfg.Timeout, "subscribe"); err != nil {
			log.Error("cannot subscribe; reconnecting", "error", err)
			go c.Disconnect(0) // paho reconnects, and subscribes again
			return
		}
		log.Info("subscribed", "broker", cfg.Address, "topics", strings.Join(filters, ", "), "qos", cfg.QoS)
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		log.Warn("connection to the MQTT broker lost; reconnecting", "broker", cfg.Address, "error", err)
	})
	s.client = paho.NewClient(o)
	s.client.Connect() // with ConnectRetry, it keeps trying
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				if !s.handle(ctx, m, keyLevel, h) {
					return
				}
			}
		}
	}()
	return s, nil
}

// handle hands m to h until h takes it, and acknowledges it then; false
// when ctx ended first (m stays unacknowledged: the broker sends it again
// when this session reconnects).
func (s *Subscriber) handle(ctx context.Context, m paho.Message, keyLevel int, h Handler) bool {
	defer s.pending.Add(-1)
	msg := Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retained: m.Retained(), Key: level(m.Topic(), keyLevel)}
	for attempt := 1; ; attempt++ {
		err := h(ctx, msg)
		if err == nil {
			m.Ack()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
		s.log.Warn("cannot take an MQTT message; retrying", "topic", msg.Topic, "attempt", attempt, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// level returns the topic's n-th level (1-based), "" when n is 0 or past
// the last.
func level(topic string, n int) string {
	if n <= 0 {
		return ""
	}
	parts := strings.Split(topic, "/")
	if n > len(parts) {
		return ""
	}
	return parts[n-1]
}

// Close stops handling messages and disconnects; a message being handled
// finishes first.
//
// A shared subscription is unsubscribed first, and the messages the broker
// sent before its acknowledgement are handled: a clean stop is a drain
// (a scale-in, a new revision's allocation taking over, a stop), and a
// stopped member's persistent session would otherwise keep its turn in
// the share: Mosquitto queues the share's messages for it, where they wait
// for a reconnection that an allocation gone for good never makes. The
// session of a member that crashes keeps its subscription, and its
// restart in the same allocation (same client id) takes what the broker
// held for it.
func (s *Subscriber) Close() {
	s.closing.Store(true)
	if len(s.shared) > 0 && s.client.IsConnectionOpen() {
		if err := wait(s.client.Unsubscribe(s.shared...), s.timeout, "unsubscribe"); err != nil {
			s.log.Warn("cannot unsubscribe before stopping: the broker may queue messages for this session", "error", err)
		} else {
			s.drain()
		}
	}
	s.cancel()
	s.wg.Wait()
	s.client.Disconnect(250)
}

// drain waits until the messages received are handled and none came for
// drainQuiet, or until s.timeout passed.
func (s *Subscriber) drain() {
	deadline := time.Now().Add(s.timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		quiet := time.Since(time.Unix(0, s.last.Load())) >= drainQuiet
		if s.pending.Load() == 0 && quiet {
			return
		}
		if time.Now().After(deadline) {
			s.log.Warn("messages still being handled at the stop: the broker sends them again when this session reconnects", "pending", s.pending.Load())
			return
		}
	}
}
