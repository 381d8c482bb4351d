package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/connectors/mqtt"
)

// Sources: a function of runtime source.<type> (hcl/spec's source blocks)
// is not invoked; the pool feeds its output stream from the connector's
// subscription once it reaches Kafka (StartStreams), and stops it on
// Close. Each message is produced to the stream, and acknowledged to the
// connector only once Kafka has it: delivery is at least once.

// The record headers a source sets besides the CloudEvents ones.
const (
	HeaderMQTTTopic    = "mqtt_topic"
	HeaderMQTTQoS      = "mqtt_qos"
	HeaderMQTTRetained = "mqtt_retained"
)

// source is a running source.
type source interface{ Close() }

// startSources starts the pool's sources on the producer.
func (p *Pool) startSources() error {
	for _, f := range p.fns {
		if f.cfg.Runtime != "source.mqtt" {
			continue
		}
		s, err := p.startMQTT(f)
		if err != nil {
			return fmt.Errorf("source %s: %w", f.cfg.Name, err)
		}
		p.sources = append(p.sources, s)
	}
	return nil
}

func (p *Pool) startMQTT(f *fnPool) (source, error) {
	env := f.fn.Env
	cfg, err := mqtt.ConfigFrom(f.cfg.Options, env)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		// Stable across a restart of the allocation's task, so that its
		// persistent session (and the messages it holds) is resumed.
		inst := os.Getenv("NOMAD_ALLOC_ID")
		if inst == "" {
			host, _ := os.Hostname()
			inst = host + "-" + strconv.Itoa(os.Getpid())
		}
		cfg.ClientID = "butter-" + p.cfg.Project + "-" + f.cfg.Name + "-" + inst
		if len(cfg.ClientID) > 128 {
			cfg.ClientID = cfg.ClientID[:128]
		}
	}
	filters := strings.Split(f.cfg.Options[mqtt.OptTopics], ",")
	share := f.cfg.Options[mqtt.OptShare]
	if share == "" {
		share = "butter-" + p.cfg.Project + "-" + f.cfg.Name
	}
	keyLevel, _ := strconv.Atoi(f.cfg.Options[mqtt.OptKey])
	out := f.cfg.Output
	if out == "" {
		return nil, fmt.Errorf("no stream to produce to")
	}
	log := p.opts.logger.Named(f.cfg.Name)
	produced := p.opts.metrics.sourced.WithLabelValues(f.cfg.Name)
	h := func(ctx context.Context, m mqtt.Message) error {
		var id [12]byte
		_, _ = rand.Read(id[:])
		rec := broker.NewEvent(out, keyOf(m.Key), m.Payload, hex.EncodeToString(id[:]), cfg.Address+"/"+m.Topic, "butter.mqtt.message")
		if m.Key != "" {
			broker.SetHeader(rec, "ce_subject", m.Key)
		}
		broker.SetHeader(rec, HeaderMQTTTopic, m.Topic)
		broker.SetHeader(rec, HeaderMQTTQoS, strconv.Itoa(int(m.QoS)))
		broker.SetHeader(rec, HeaderMQTTRetained, strconv.FormatBool(m.Retained))
		if err := p.producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("produce to %s: %w", out, err)
		}
		produced.Inc()
		return nil
	}
	return mqtt.Subscribe(cfg, filters, share, keyLevel, h, log)
}

func keyOf(k string) []byte {
	if k == "" {
		return nil
	}
	return []byte(k)
}
