package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LazyRequester is a Requester that connects in the background, retrying
// with backoff, so a gateway serves its direct routes while Kafka is not
// reachable yet: calls fail with a clear error until it is. One made with
// NoKafka never connects and says why.
type LazyRequester struct {
	mu      sync.Mutex
	r       *Requester
	missing string
	lastErr error // why the last attempt to connect failed

	cancel context.CancelFunc
	done   chan struct{}
}

// NewLazyRequester starts connecting to cfg's brokers, waiting for replies
// on replyTopic. Close stops the attempts and the requester.
func NewLazyRequester(ctx context.Context, log hclog.Logger, cfg Config, replyTopic string) *LazyRequester {
	ctx, cancel := context.WithCancel(ctx)
	l := &LazyRequester{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.connect(ctx, log, cfg, replyTopic)
	}()
	return l
}

// NoKafka is a LazyRequester for a process without Kafka: every call fails
// with why.
func NoKafka(why string) *LazyRequester {
	done := make(chan struct{})
	close(done)
	return &LazyRequester{missing: why, cancel: func() {}, done: done}
}

func (l *LazyRequester) connect(ctx context.Context, log hclog.Logger, cfg Config, replyTopic string) {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		// Check first: it fails fast, naming the cause (a refused
		// login, an untrusted certificate), where the requester's
		// topic creation would retry for a while and report only EOF.
		var r *Requester
		err := cfg.Check(ctx)
		if err == nil {
			r, err = NewRequester(ctx, cfg, replyTopic)
		}
		if err == nil {
			l.mu.Lock()
			l.r = r
			l.mu.Unlock()
			log.Info("connected to Kafka for queued routes", "brokers", strings.Join(cfg.Brokers, ","))
			return
		}
		if ctx.Err() != nil {
			return
		}
		err = cfg.Explain(err)
		l.mu.Lock()
		l.lastErr = err
		l.mu.Unlock()
		log.Warn("cannot reach Kafka for queued routes yet; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Connected reports whether the requester has reached Kafka.
func (l *LazyRequester) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r != nil
}

// Call is Requester.Call once connected, and an error saying why before.
func (l *LazyRequester) Call(ctx context.Context, topic string, key, value []byte, deadline time.Time) ([]byte, error) {
	l.mu.Lock()
	r, lastErr := l.r, l.lastErr
	l.mu.Unlock()
	if r == nil && l.missing != "" {
		return nil, errors.New(l.missing)
	}
	if r == nil && lastErr != nil {
		return nil, fmt.Errorf("not connected to Kafka yet; queued and async routes need it: %w", lastErr)
	}
	if r == nil {
		return nil, errors.New("not connected to Kafka yet (see the log); queued and async routes need it")
	}
	return r.Call(ctx, topic, key, value, deadline)
}

// Close stops connecting, waits for the attempt in progress, and closes
// the requester if it connected.
func (l *LazyRequester) Close() {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r != nil {
		l.r.Close()
		l.r = nil
	}
}
