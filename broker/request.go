package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Requester makes request/response calls over Kafka: a request is an
// event on the function's stream carrying a reply-to topic, a correlation
// id and a deadline; the function's pool produces the answer to the
// reply-to topic; the requester waits for it up to the deadline.
//
// Each Requester owns its reply topic and reads it from its end, without a
// consumer group. A reply that arrives after its caller gave up is dropped
// and counted (Late). This is the building block of the gateway's queued
// mode and of a function's call(stream, payload).
type Requester struct {
	cl    *kgo.Client
	topic string

	mu      sync.Mutex
	waiting map[string]chan *kgo.Record
	late    atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
}

// NewRequester creates the reply topic if needed and starts reading it.
func NewRequester(ctx context.Context, cfg Config, replyTopic string) (*Requester, error) {
	base, err := cfg.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append(base, ProducerOpts()...),
		kgo.ConsumeTopics(replyTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("requester: %w", err)
	}
	if err := EnsureTopics(ctx, kadm.NewClient(cl), []Topic{{Name: replyTopic, Partitions: 1, Retention: time.Hour}}); err != nil {
		cl.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Requester{cl: cl, topic: replyTopic, waiting: map[string]chan *kgo.Record{}, cancel: cancel, done: make(chan struct{})}
	go r.read(rctx)
	return r, nil
}

func (r *Requester) read(ctx context.Context) {
	defer close(r.done)
	for {
		fs := r.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(rec *kgo.Record) {
			id := Header(rec, HeaderCorrelation)
			r.mu.Lock()
			ch := r.waiting[id]
			delete(r.waiting, id)
			r.mu.Unlock()
			if ch == nil {
				r.late.Add(1)
				return
			}
			ch <- rec
		})
	}
}

// Late counts replies that arrived after their caller had given up.
func (r *Requester) Late() int64 { return r.late.Load() }

// Call sends value to topic as a request and returns the reply's value. It
// returns a *proto.Error: Timeout when no reply came by the deadline, or
// the function's typed error. When ctx is cancelled before, it returns an
// error wrapping context.Canceled (ctx's error), not a Timeout: the
// caller gave up, the callee did not fail.
func (r *Requester) Call(ctx context.Context, topic string, key, value []byte, deadline time.Time) ([]byte, error) {
	return r.Send(ctx, NewEvent(topic, key, value, "", "butter/requester", "butter.request"), deadline)
}

// Send is Call for a request record the caller built (its topic, key,
// value and CloudEvent attributes, such as the source of a function's
// context call): Send adds the reply-to, correlation id and deadline
// headers, and the correlation id as the event id when rec has none.
func (r *Requester) Send(ctx context.Context, rec *kgo.Record, deadline time.Time) ([]byte, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ch := make(chan *kgo.Record, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	topic := rec.Topic
	if Header(rec, HeaderID) == "" {
		SetHeader(rec, HeaderID, id)
	}
	SetHeader(rec, HeaderReplyTo, r.topic)
	SetHeader(rec, HeaderCorrelation, id)
	SetHeader(rec, HeaderDeadline, deadline.UTC().Format(time.RFC3339Nano))
	setContextHeaders(ctx, rec)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := r.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", topic, err)
	}
	select {
	case reply := <-ch:
		if typ := Header(reply, HeaderErrorType); typ != "" {
			return nil, &proto.Error{Type: typ, Message: Header(reply, HeaderErrorMessage)}
		}
		return reply.Value, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("no reply from %s before the deadline", topic)}
		}
		// The caller gave up (its context was cancelled): say so,
		// rather than blame the callee with a Timeout.
		return nil, fmt.Errorf("request to %s: the caller stopped waiting for the reply: %w", topic, ctx.Err())
	}
}

// Close stops reading replies.
func (r *Requester) Close() {
	r.cancel()
	<-r.done
	r.cl.Close()
}

// Reply returns the reply to request: value on the request's reply-to
// topic with its correlation id, or nil when the request asked for none.
// A non-empty errType makes it an error reply.
func Reply(request *kgo.Record, value []byte, errType, errMsg string) *kgo.Record {
	to := Header(request, HeaderReplyTo)
	if to == "" {
		return nil
	}
	rec := &kgo.Record{Topic: to, Key: request.Key, Value: value}
	SetHeader(rec, HeaderCorrelation, Header(request, HeaderCorrelation))
	SetHeader(rec, HeaderSpecVersion, "1.0")
	SetHeader(rec, HeaderID, Header(request, HeaderID)+"/reply")
	if errType != "" {
		SetHeader(rec, HeaderErrorType, errType)
		SetHeader(rec, HeaderErrorMessage, errMsg)
	}
	return rec
}
