package runtime

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/connectors/influxdb"
	"github.com/butterfn/butter/connectors/mqtt"
	"github.com/butterfn/butter/connectors/postgres"
	"github.com/butterfn/butter/connectors/tlsconf"
	"github.com/butterfn/butter/sdk/go/proto"
)

// HTTPSink is the runtime of `sink "http"` (hcl/spec/sink.go): each record
// of its stream is one request to the sink's URL, made in the pool's
// process. Its settings come in the call's options: url, method,
// header.<Name>, and signature, the secret (in the function's
// environment) whose HMAC-SHA256 of the body goes in Butter-Signature.
//
// The answer decides the record's fate, through the pool's rules for a
// function's errors: a 2xx delivered it (no output); a 4xx other than 408
// and 429 is the endpoint refusing the record, a PreconditionFailed, which
// is never retried and is dead-lettered with the endpoint's answer; a 408,
// 429, 5xx, a connection that fails or a deadline passing is an Exception
// (Timeout for the deadline), retried as the sink's retry block says and
// dead-lettered after its last attempt. The record's event id goes in
// Butter-Event-Id, the same on every attempt, for the endpoint to drop
// duplicates (delivery is at least once).
type HTTPSink struct {
	// Client makes the requests; nil uses one with no timeout of its own
	// (the call's deadline bounds each attempt).
	Client *http.Client
}

// Headers a sink sends of its own.
const (
	SinkEventID   = "Butter-Event-Id"
	SinkSignature = "Butter-Signature"
	SinkStream    = "Butter-Stream"
)

// sinkAnswerLimit is how much of an endpoint's answer an error keeps.
const sinkAnswerLimit = 2 << 10

// Start implements Runtime: the sink needs no process.
func (s HTTPSink) Start(ctx context.Context, fn *Function) (Instance, error) {
	c := s.Client
	if c == nil {
		// tls_ca, tls_cert and tls_key: a CA of the endpoint's own, a
		// client certificate for one that requires it.
		tc, err := tlsconf.FromOptions(fn.Options, fn.Env)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
		}
		c = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     tc,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: max(fn.Concurrency, 2),
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &sinkInstance{fn: fn, client: c, exited: make(chan struct{})}, nil
}

type sinkInstance struct {
	fn     *Function
	client *http.Client
	exited chan struct{}
}

func (i *sinkInstance) Invoke(ctx context.Context, inv *Invocation) error {
	target := inv.Options["url"]
	if target == "" {
		return &proto.Error{Type: proto.Exception, Message: "sink " + i.fn.Name + " has no url"}
	}
	body, err := io.ReadAll(inv.Input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	method := inv.Options["method"]
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("sink %s: %v", i.fn.Name, err)}
	}
	for k, v := range inv.Options {
		if name, ok := strings.CutPrefix(k, "header."); ok {
			req.Header.Set(name, v)
		}
	}
	if ct := inv.Meta["content-type"]; ct != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ct)
	} else if ct := inv.Meta["ce_datacontenttype"]; ct != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ct)
	}
	if id := inv.Meta["ce_id"]; id != "" {
		req.Header.Set(SinkEventID, id)
	}
	if pos := inv.Meta["butter.position"]; pos != "" {
		if j := strings.LastIndexByte(pos, '/'); j > 0 {
			if k := strings.LastIndexByte(pos[:j], '/'); k > 0 {
				req.Header.Set(SinkStream, pos[:k])
			}
		}
	}
	if name := inv.Options["signature"]; name != "" {
		key, ok := i.fn.Env[name]
		if !ok || key == "" {
			return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("sink %s signs with secret %s, which has no value", i.fn.Name, name)}
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		req.Header.Set(SinkSignature, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := i.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s %s: no answer before the deadline", method, redact(target))}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("%s %s: %v", method, redact(target), unwrapURL(err))}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, sinkAnswerLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("%s %s answered %s", method, redact(target), resp.Status)
	if a := strings.TrimSpace(string(answer)); a != "" {
		msg += ": " + a
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &proto.Error{Type: proto.PreconditionFailed, Message: "the endpoint refused the record: " + msg}
	}
	return &proto.Error{Type: proto.Exception, Message: msg}
}

// redact drops a URL's credentials and query from messages.
func redact(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if at := strings.Index(u, "@"); at >= 0 {
		if s := strings.Index(u, "://"); s >= 0 && s < at {
			u = u[:s+3] + u[at+1:]
		}
	}
	return u
}

// unwrapURL drops the *url.Error's repetition of the method and URL.
func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func (i *sinkInstance) Stop(time.Duration) error {
	select {
	case <-i.exited:
	default:
		close(i.exited)
	}
	return nil
}

func (i *sinkInstance) Exited() <-chan struct{} { return i.exited }
func (i *sinkInstance) Pid() int                { return 0 }

// MQTTSink is the runtime of `sink "mqtt"`: each record is published to
// the topic its template gives (connectors/mqtt), at the sink's QoS; a
// QoS 1 or 2 publish returns once the broker acknowledged it. A broker
// that cannot be reached fails the record as an Exception (retried, then
// dead-lettered); a topic the record cannot fill (no key for {key}) is a
// PreconditionFailed.
type MQTTSink struct{}

// Start implements Runtime: it connects to the broker, and keeps trying
// in the background when it cannot (each publish fails meanwhile).
func (MQTTSink) Start(ctx context.Context, fn *Function) (Instance, error) {
	cfg, err := mqtt.ConfigFrom(fn.Options, fn.Env)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = clientID(fn.Name)
	}
	return &mqttSinkInstance{fn: fn, pub: mqtt.NewPublisher(cfg), exited: make(chan struct{})}, nil
}

type mqttSinkInstance struct {
	fn     *Function
	pub    *mqtt.Publisher
	exited chan struct{}
	once   sync.Once
}

func (i *mqttSinkInstance) Invoke(ctx context.Context, inv *Invocation) error {
	body, err := io.ReadAll(inv.Input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	stream := ""
	if pos := inv.Meta["butter.position"]; pos != "" {
		if j := strings.LastIndexByte(pos, '/'); j > 0 {
			if k := strings.LastIndexByte(pos[:j], '/'); k > 0 {
				stream = pos[:k]
			}
		}
	}
	topic, err := mqtt.Topic(inv.Options[mqtt.OptTopic], inv.Meta["ce_subject"], stream)
	if err != nil {
		return &proto.Error{Type: proto.PreconditionFailed, Message: err.Error()}
	}
	if err := i.pub.Publish(ctx, topic, body, inv.Options[mqtt.OptRetain] == "true"); err != nil {
		return &proto.Error{Type: proto.Exception, Message: err.Error()}
	}
	return nil
}

func (i *mqttSinkInstance) Stop(time.Duration) error {
	i.once.Do(func() {
		i.pub.Close()
		close(i.exited)
	})
	return nil
}

func (i *mqttSinkInstance) Exited() <-chan struct{} { return i.exited }
func (i *mqttSinkInstance) Pid() int                { return 0 }

// clientID is a connector's default MQTT client id: its name, this host
// and process, so that two pools never share one (a broker drops the
// older connection of a client id).
func clientID(name string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("butter-%s-%s-%d", name, host, os.Getpid())
}

// Source is the runtime of a source (source "mqtt"): the pool feeds its
// stream from the source's subscription (plugins/pool/sources.go); an
// instance exists so the pool can load it like any function, and it takes
// no calls.
type Source struct{}

// Start implements Runtime.
func (Source) Start(ctx context.Context, fn *Function) (Instance, error) {
	return &sourceInstance{name: fn.Name, exited: make(chan struct{})}, nil
}

type sourceInstance struct {
	name   string
	exited chan struct{}
	once   sync.Once
}

func (i *sourceInstance) Invoke(ctx context.Context, inv *Invocation) error {
	return &proto.Error{Type: proto.PreconditionFailed, Message: "source " + i.name + " is fed by its subscription: it takes no calls"}
}

func (i *sourceInstance) Stop(time.Duration) error {
	i.once.Do(func() { close(i.exited) })
	return nil
}

func (i *sourceInstance) Exited() <-chan struct{} { return i.exited }
func (i *sourceInstance) Pid() int                { return 0 }

// PostgresSink is the runtime of `sink "postgres"` (connectors/postgres):
// each record becomes a row; a batch of a stream's records (runtime.Batcher)
// is one statement. A record PostgreSQL refuses is a PreconditionFailed
// (dead-lettered at once, with PostgreSQL's message); a failure to reach
// it is an Exception, retried.
type PostgresSink struct{}

// Start implements Runtime.
func (PostgresSink) Start(ctx context.Context, fn *Function) (Instance, error) {
	cfg, err := postgres.ConfigFrom(fn.Options, fn.Env)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
	}
	s, err := postgres.NewSink(cfg)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
	}
	return &pgSinkInstance{sink: s, exited: make(chan struct{})}, nil
}

type pgSinkInstance struct {
	sink   *postgres.Sink
	exited chan struct{}
	once   sync.Once
}

func pgError(err error) error {
	var re *postgres.RefusedError
	if errors.As(err, &re) {
		return &proto.Error{Type: proto.PreconditionFailed, Message: "PostgreSQL refused the record: " + re.Error()}
	}
	return &proto.Error{Type: proto.Exception, Message: err.Error()}
}

func (i *pgSinkInstance) Invoke(ctx context.Context, inv *Invocation) error {
	body, err := io.ReadAll(inv.Input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	if _, err := i.sink.Write(ctx, []postgres.Record{{ID: inv.Meta["ce_id"], Value: body}}); err != nil {
		return pgError(err)
	}
	return nil
}

// Batches implements Batcher.
func (i *pgSinkInstance) Batches() bool { return true }

// InvokeBatch implements Batcher: the batch's records in one statement.
func (i *pgSinkInstance) InvokeBatch(ctx context.Context, b *Batch) []Result {
	return writeBatch(ctx, b, func(ctx context.Context, evs []sinkEvent) (int, error) {
		recs := make([]postgres.Record, len(evs))
		for k, ev := range evs {
			recs[k] = postgres.Record{ID: ev.meta["ce_id"], Value: ev.input}
		}
		return i.sink.Write(ctx, recs)
	}, pgError)
}

func (i *pgSinkInstance) Stop(time.Duration) error {
	i.once.Do(func() {
		i.sink.Close()
		close(i.exited)
	})
	return nil
}

func (i *pgSinkInstance) Exited() <-chan struct{} { return i.exited }
func (i *pgSinkInstance) Pid() int                { return 0 }

// InfluxSink is the runtime of `sink "influxdb"` (connectors/influxdb):
// each record becomes a point; a batch of a stream's records
// (runtime.Batcher) is one request. A record InfluxDB refuses is a
// PreconditionFailed (dead-lettered at once, with InfluxDB's message); a
// failure to reach it is an Exception, retried.
type InfluxSink struct{}

// Start implements Runtime.
func (InfluxSink) Start(ctx context.Context, fn *Function) (Instance, error) {
	cfg, err := influxdb.ConfigFrom(fn.Options, fn.Env)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
	}
	s, err := influxdb.NewSink(cfg)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", fn.Name, err)
	}
	return &influxSinkInstance{sink: s, exited: make(chan struct{})}, nil
}

type influxSinkInstance struct {
	sink   *influxdb.Sink
	exited chan struct{}
	once   sync.Once
}

func influxError(err error) error {
	var re *influxdb.RefusedError
	if errors.As(err, &re) {
		return &proto.Error{Type: proto.PreconditionFailed, Message: "InfluxDB refused the record: " + re.Error()}
	}
	return &proto.Error{Type: proto.Exception, Message: err.Error()}
}

// eventTime is an event's ce_time, zero when it has none.
func eventTime(v string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, v)
	return t
}

func (i *influxSinkInstance) Invoke(ctx context.Context, inv *Invocation) error {
	body, err := io.ReadAll(inv.Input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	if _, err := i.sink.Write(ctx, []influxdb.Record{{Value: body, Time: eventTime(inv.Meta["ce_time"])}}); err != nil {
		return influxError(err)
	}
	return nil
}

// Batches implements Batcher.
func (i *influxSinkInstance) Batches() bool { return true }

// InvokeBatch implements Batcher: the batch's records in one request.
func (i *influxSinkInstance) InvokeBatch(ctx context.Context, b *Batch) []Result {
	return writeBatch(ctx, b, func(ctx context.Context, evs []sinkEvent) (int, error) {
		recs := make([]influxdb.Record, len(evs))
		for k, ev := range evs {
			recs[k] = influxdb.Record{Value: ev.input, Time: eventTime(ev.meta["ce_time"])}
		}
		return i.sink.Write(ctx, recs)
	}, influxError)
}

// sinkEvent is one event of a batch given to a sink: its metadata and
// input (copied: the batch's buffer is the caller's).
type sinkEvent struct {
	meta  map[string]string
	input []byte
}

// writeBatch runs a batch through a sink's write, which writes the first
// n events (or all) and returns the error of the one after them: the
// events before it succeed, it fails with typed(err), the rest are
// skipped, as Batcher says.
func writeBatch(ctx context.Context, b *Batch, write func(context.Context, []sinkEvent) (int, error), typed func(error) error) []Result {
	res := make([]Result, b.Count)
	payload := append(proto.AppendBatchHead(nil, 0, b.Count), b.Encoded()...)
	_, _, r, err := proto.NewBatchReader(payload)
	if err != nil {
		for k := range res {
			res[k].Err = &proto.Error{Type: proto.Exception, Message: err.Error()}
		}
		return res
	}
	evs := make([]sinkEvent, 0, b.Count)
	var ev proto.BatchEvent
	for r.Next(&ev) {
		meta := make(map[string]string, len(ev.Meta))
		for _, p := range ev.Meta {
			meta[string(p.Key)] = string(p.Value)
		}
		evs = append(evs, sinkEvent{meta: meta, input: append([]byte(nil), ev.Input...)})
	}
	if !b.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, b.Deadline)
		defer cancel()
	}
	n, err := write(ctx, evs)
	for k := range res {
		switch {
		case k < n:
		case k == n && err != nil:
			res[k].Err = typed(err)
		default:
			res[k].Err = &proto.Error{Type: proto.Skipped, Message: "an event before it failed"}
		}
	}
	if n > 0 && b.OK != nil {
		b.OK(0, make([][]byte, n))
	}
	return res
}

func (i *influxSinkInstance) Stop(time.Duration) error {
	i.once.Do(func() { close(i.exited) })
	return nil
}

func (i *influxSinkInstance) Exited() <-chan struct{} { return i.exited }
func (i *influxSinkInstance) Pid() int                { return 0 }
