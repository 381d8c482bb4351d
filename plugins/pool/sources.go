package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/connectors/mqtt"
	"github.com/butterfn/butter/connectors/postgres"
	"github.com/butterfn/butter/connectors/tlsconf"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
func (p *Pool) startSources(base []kgo.Opt) error {
	for _, f := range p.fns {
		var s source
		var err error
		switch f.cfg.Runtime {
		case "source.mqtt":
			s, err = p.startMQTT(f)
		case "source.postgres":
			s, err = p.startPostgres(f, base)
		default:
			continue
		}
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

// SourceCursorTopic is the compacted topic where a project's polling
// sources keep their cursors, by source name: "<project>._sources".
func SourceCursorTopic(project string) string { return project + "._sources" }

// pgSource is a running `source "postgres"`: it polls its query from its
// cursor and produces each row to its stream, then the cursor to the
// cursor topic, so that after a restart it goes on where it stopped (a
// crash between the two produces the last rows again, with the same ids:
// "<source>/<cursor>"). Only the pool holding the source's advisory lock
// in PostgreSQL polls.
type pgSource struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *pgSource) Close() {
	s.cancel()
	<-s.done
}

func (p *Pool) startPostgres(f *fnPool, base []kgo.Opt) (source, error) {
	opts := f.cfg.Options
	cfg := postgres.SourceConfig{DSN: opts[postgres.OptDSN], Query: opts[postgres.OptQuery], Cursor: opts[postgres.OptCursor],
		Key: opts[postgres.OptKey], Interval: time.Second, Lock: p.cfg.Project + "/" + f.cfg.Name}
	if name := opts[postgres.OptPassword]; name != "" {
		cfg.Password = f.fn.Env[name]
	}
	tc, err := tlsconf.FromOptions(opts, f.fn.Env)
	if err != nil {
		return nil, fmt.Errorf("postgres source: %w", err)
	}
	cfg.TLS = tc
	if d, err := time.ParseDuration(opts[postgres.OptInterval]); err == nil && d > 0 {
		cfg.Interval = d
	}
	if cfg.DSN == "" || cfg.Query == "" || cfg.Cursor == "" || f.cfg.Output == "" {
		return nil, fmt.Errorf("a postgres source needs a dsn, a query, a cursor and a stream")
	}
	topic := SourceCursorTopic(p.cfg.Project)
	cursor, err := readCursor(base, topic, f.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("read its cursor from %s: %w", topic, err)
	}
	log := p.opts.logger.Named(f.cfg.Name)
	produced := p.opts.metrics.sourced.WithLabelValues(f.cfg.Name)
	ctx, cancel := context.WithCancel(context.Background())
	s := &pgSource{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var err error
		var poller *postgres.Poller
		defer func() {
			if poller != nil {
				poller.Close()
			}
		}()
		held := false
		wait := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = cfg.Interval
			if poller == nil {
				if poller, err = postgres.NewPoller(ctx, cfg); err != nil {
					log.Warn("cannot reach PostgreSQL; retrying", "error", err, "retry_in", wait)
					poller = nil
					continue
				}
				held = false
			}
			if !held {
				if held, err = poller.Lock(ctx); err != nil {
					log.Warn("cannot take the source's lock; reconnecting", "error", err)
					poller.Close()
					poller = nil
					continue
				}
				if !held {
					continue // another pool polls
				}
				log.Info("polling", "cursor", cursor)
			}
			rows, err := poller.Poll(ctx, cursor)
			if err != nil {
				log.Warn("poll failed; reconnecting", "error", err)
				poller.Close()
				poller = nil
				continue
			}
			if len(rows) == 0 {
				continue
			}
			recs := make([]*kgo.Record, 0, len(rows))
			for _, r := range rows {
				rec := broker.NewEvent(f.cfg.Output, keyOf(r.Key), r.Value, f.cfg.Name+"/"+r.Cursor, "postgres:"+f.cfg.Name, "butter.postgres.row")
				if r.Key != "" {
					broker.SetHeader(rec, "ce_subject", r.Key)
				}
				broker.SetHeader(rec, "pg_cursor", r.Cursor)
				recs = append(recs, rec)
			}
			if err := p.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				log.Warn("cannot produce the rows; polling them again", "error", err)
				continue
			}
			last := rows[len(rows)-1].Cursor
			if err := p.producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(f.cfg.Name), Value: []byte(last)}).FirstErr(); err != nil {
				log.Warn("cannot store the cursor; the rows may be produced again", "error", err)
			}
			cursor = last
			produced.Add(float64(len(rows)))
			wait = 0 // more may be waiting
		}
	}()
	return s, nil
}

// readCursor reads the cursor topic to its end and returns key's last
// value ("" when it has none).
func readCursor(base []kgo.Opt, topic, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), base...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return "", err
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Offset == 0 {
		return "", nil
	}
	cursor := ""
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return "", err
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == key {
				cursor = string(r.Value)
			}
			done = done || r.Offset >= end.Offset-1
		})
		if done {
			return cursor, nil
		}
	}
}
