package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Per-key state (docs/state.md). A function with a state block gets, with
// each call, the state of the call's key, and returns the new state with
// its result. The pool keeps every key's state in memory and, once Kafka
// is attached (StartStreams), writes each change to the function's
// compacted changelog topic before the call returns, so before a stream
// event's offset is committed. A pool restores the state by reading the
// changelog to its end before it consumes, and keeps following it, so the
// writes of other pools running the function reach it too.

// names.HeaderStateKey gives an HTTP call its state key when the body has
// no key field and no route or query parameter is named like it.

// StateKeyRecord is the state block's key that selects the state by the
// record key (or the Butter-State-Key header) alone.
const StateKeyRecord = "$key"

// MaxStateBytes bounds one key's state: with its key, it must fit in a
// Kafka record (brokers take about 1 MiB by default).
const MaxStateBytes = 1_000_000

// keyPeek is how much of a call's input the pool reads to find the key
// field; a larger input is passed on untouched, and its key comes from
// the record key, the parameters or the header.
const keyPeek = 1 << 20

type stateStore struct {
	fn    string
	field string
	ttl   time.Duration
	log   hclog.Logger

	mu sync.Mutex
	// now is the clock of the TTL, of a state's write time and its
	// expiry: time.Now, or a test's (SetStateClock).
	now     func() time.Time
	entries map[string]*stateEntry
	locks   map[string]*keyLock
	// tombs are deleted keys whose entries stay, to keep their offsets,
	// until the tail has read past their tombstones.
	tombs []tombRef
	// ready is closed once the state may be served: at once in memory,
	// after the restore with a changelog.
	ready chan struct{}

	topic   string
	cl      *kgo.Client // nil: in memory only
	pos     map[int32]int64
	moved   chan struct{} // closed and replaced when the tail advances
	stop    context.CancelFunc
	tailed  chan struct{}
	memOnce sync.Once
}

type stateEntry struct {
	value     []byte // nil: deleted
	at        time.Time
	partition int32
	offset    int64 // -1: written in memory only
}

type tombRef struct {
	key       string
	partition int32
	offset    int64
}

type keyLock struct {
	ch chan struct{}
	n  int
}

func newStateStore(fn string, sc *StateConfig, log hclog.Logger) *stateStore {
	ttl := duration(sc.TTL)
	ready := make(chan struct{})
	close(ready)
	return &stateStore{fn: fn, field: sc.Key, ttl: ttl, log: log, now: time.Now, entries: map[string]*stateEntry{}, locks: map[string]*keyLock{}, ready: ready}
}

// lock serializes the calls of one key; it gives up when ctx ends.
func (s *stateStore) lock(ctx context.Context, key string) (func(), error) {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		s.locks[key] = l
	}
	l.n++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if l.n--; l.n == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// waitReady waits for the restore.
func (s *stateStore) waitReady(ctx context.Context) error {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// get returns a key's state, nil when it has none; expired reports a
// state that outlived the TTL, which the caller tombstones.
func (s *stateStore) get(key string) (value []byte, expired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil || e.value == nil {
		return nil, false
	}
	if s.expired(e.at) {
		return nil, true
	}
	return e.value, false
}

func (s *stateStore) expired(at time.Time) bool {
	return s.ttl > 0 && s.now().Sub(at) > s.ttl
}

// put saves a key's state (nil deletes it): to the changelog first, until
// the brokers acknowledge it or ctx ends, then in memory.
func (s *stateStore) put(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	cl, now := s.cl, s.now
	s.mu.Unlock()
	if cl == nil {
		s.memOnce.Do(func() {
			s.log.Warn("state is kept in memory only: this pool has no Kafka changelog, and loses the state when it stops", "function", s.fn)
		})
		s.mu.Lock()
		if value == nil {
			delete(s.entries, key)
		} else {
			s.entries[key] = &stateEntry{value: value, at: now(), offset: -1}
		}
		s.mu.Unlock()
		return nil
	}
	rec := &kgo.Record{Topic: s.topic, Key: []byte(key), Value: value, Timestamp: now()}
	for {
		err := cl.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, kerr.MessageTooLarge) {
			return fmt.Errorf("save the state of key %q: %w", key, err)
		}
		s.log.Warn("state write failed; retrying", "topic", s.topic, "key", key, "error", err)
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("save the state of key %q: %w", key, ctx.Err())
		}
	}
	s.mu.Lock()
	s.apply(rec)
	s.mu.Unlock()
	return nil
}

// apply records a changelog record in memory unless the key holds a
// newer one; s.mu must be held.
func (s *stateStore) apply(r *kgo.Record) {
	key := string(r.Key)
	if e := s.entries[key]; e != nil && e.offset >= 0 && e.partition == r.Partition && r.Offset <= e.offset {
		return
	}
	if r.Value == nil || s.expired(r.Timestamp) {
		s.entries[key] = &stateEntry{partition: r.Partition, offset: r.Offset}
		s.tombs = append(s.tombs, tombRef{key, r.Partition, r.Offset})
		return
	}
	s.entries[key] = &stateEntry{value: r.Value, at: r.Timestamp, partition: r.Partition, offset: r.Offset}
}

// attach restores the state from the changelog topic, read to its end,
// then keeps following it; from then on every change is written there.
func (s *stateStore) attach(ctx context.Context, base []kgo.Opt, topic string) error {
	opts := append(append([]kgo.Opt{}, base...), broker.ProducerOpts()...)
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Only committed changes are applied: those of an exactly-once
		// transaction that aborted never are (transact.go). The control
		// records (transaction markers) advance the reader's position,
		// so that sync sees it reach the end.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("function %s: state: %w", s.fn, err)
	}
	tctx, stop := context.WithCancel(context.Background())
	s.mu.Lock()
	ready := make(chan struct{})
	// The changelog is the truth: what calls before it wrote in memory
	// is dropped.
	s.entries, s.tombs = map[string]*stateEntry{}, nil
	s.ready, s.topic, s.cl, s.stop = ready, topic, cl, stop
	s.pos, s.moved, s.tailed = map[int32]int64{}, make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	go s.tail(tctx)
	start := time.Now()
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("function %s: restore the state from %s: %w", s.fn, topic, err)
	}
	s.mu.Lock()
	n := 0
	for _, e := range s.entries {
		if e.value != nil {
			n++
		}
	}
	s.mu.Unlock()
	s.log.Info("state restored", "function", s.fn, "topic", topic, "keys", n, "took", time.Since(start).Round(time.Millisecond))
	close(ready)
	return nil
}

// tail applies the changelog's records as they come, ours and those of
// the other pools running the function.
func (s *stateStore) tail(ctx context.Context) {
	defer close(s.tailed)
	for {
		fs := s.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("state changelog fetch failed", "topic", t, "partition", p, "error", err)
		})
		s.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				s.apply(r)
			}
			s.pos[r.Partition] = r.Offset + 1
		})
		kept := s.tombs[:0]
		for _, t := range s.tombs {
			if s.pos[t.partition] <= t.offset {
				kept = append(kept, t)
			} else if e := s.entries[t.key]; e != nil && e.value == nil && e.offset == t.offset {
				delete(s.entries, t.key)
			}
		}
		s.tombs = kept
		close(s.moved)
		s.moved = make(chan struct{})
		s.mu.Unlock()
	}
}

// sync waits until the tail has read the changelog up to its end as of
// now. Reading read_committed, the tail reaches a transaction's records
// once it is decided: sync waits for the transactions open now on the
// changelog (those of a crashed pool until its restart fences them, or
// until their timeout).
func (s *stateStore) sync(ctx context.Context) error {
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(ctx, s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, s.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if st, ok := starts.Lookup(o.Topic, o.Partition); !ok || o.Offset > st.Offset {
			want[o.Partition] = o.Offset
		}
	})
	for {
		s.mu.Lock()
		done := true
		for p, off := range want {
			if s.pos[p] < off {
				done = false
			}
		}
		moved := s.moved
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-moved:
		case <-s.tailed:
			return errors.New("the changelog reader stopped")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close stops following the changelog; a second close does nothing.
func (s *stateStore) close() {
	s.mu.Lock()
	cl, stop, tailed := s.cl, s.stop, s.tailed
	s.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-tailed
	cl.Close()
}

// sweep drops expired states from memory; the changelog drops them by
// retention.
func (s *stateStore) sweep() {
	if s.ttl <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if e.value != nil && s.expired(e.at) {
			delete(s.entries, k)
		}
	}
}

// key finds a call's state key: the key field of a JSON object input (a
// string, or a number as written), else the call's route or query
// parameter of that name, else fallback (the record key, or the
// Butter-State-Key header). It returns the input to pass on in place of
// in, which it may have read.
func (s *stateStore) key(in io.Reader, meta map[string]string, fallback string) (string, io.Reader, error) {
	if s.field == StateKeyRecord {
		return fallback, in, nil
	}
	if in != nil {
		var buf bytes.Buffer
		n, err := buf.ReadFrom(io.LimitReader(in, keyPeek+1))
		if err != nil {
			return "", nil, fmt.Errorf("read the input: %w", err)
		}
		if n > keyPeek {
			in = io.MultiReader(&buf, in)
		} else {
			if k := jsonField(buf.Bytes(), s.field); k != "" {
				return k, &buf, nil
			}
			in = &buf
		}
	}
	if k := meta["param."+strings.ToLower(s.field)]; k != "" {
		return k, in, nil
	}
	return fallback, in, nil
}

// jsonField returns field of a JSON object when it is a non-empty string
// or a number, else "".
func jsonField(b []byte, field string) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return ""
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return ""
	}
	raw := obj[field]
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case c == '-' || c >= '0' && c <= '9':
		return string(raw)
	}
	return ""
}

// invokeStateful runs a call of a function with state: it waits for the
// restore, finds the key, serializes the key's calls, passes the state in
// and saves the change the function returned, or tombstones a state that
// expired. save bounds the write (the caller's context, not the call's
// deadline: a stream event's state must be saved before its commit).
func (f *fnPool) invokeStateful(save, ctx context.Context, c *Call, deadline time.Time) error {
	s := f.state
	if err := s.waitReady(ctx); err != nil {
		return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("the state of %s was still being restored at the deadline", f.cfg.Name)}
	}
	key, in, err := s.key(c.Input, c.Meta, c.StateKey)
	if err != nil {
		return err
	}
	cc := *c
	cc.Input = in
	msg := &proto.StateMsg{Key: key, Field: s.field}
	if key == "" {
		_, err := f.invoke(ctx, &cc, deadline, msg)
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("calls for state key %q of %s stayed busy until the deadline", key, f.cfg.Name)}
	}
	defer unlock()
	get, put := s.get, func(key string, value []byte) error { return s.put(save, key, value) }
	if c.txn != nil {
		// An exactly-once event: the change joins its transaction.
		get, put = c.txn.get, func(key string, value []byte) error { return c.txn.put(save, key, value) }
	}
	value, expired := get(key)
	msg.Value = value
	c.exec.state(key, value)
	ns, err := f.invoke(ctx, &cc, deadline, msg)
	if err != nil {
		return err
	}
	c.exec.newState(ns)
	switch {
	case ns != nil && ns.Deleted:
		return put(key, nil)
	case ns != nil && len(ns.Value) > 0 && string(ns.Value) != "null":
		if len(ns.Value) > MaxStateBytes {
			return &proto.Error{Type: proto.PostconditionFailed, Message: fmt.Sprintf("the new state of key %q is %d bytes; a state holds at most %d", key, len(ns.Value), MaxStateBytes)}
		}
		return put(key, ns.Value)
	case ns != nil:
		return put(key, nil)
	case expired:
		return put(key, nil)
	}
	return nil
}

// changelogTopic is the function's changelog topic: compacted, one
// partition; with a TTL, records older than it are deleted too
// (cleanup.policy=compact,delete), since their states have expired.
func changelogTopic(ctx context.Context, adm *kadm.Client, name string, ttl time.Duration) error {
	cfg := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	if ttl > 0 {
		cfg["cleanup.policy"] = kadm.StringPtr("compact,delete")
		cfg["retention.ms"] = kadm.StringPtr(fmt.Sprint(ttl.Milliseconds()))
	}
	resp, err := adm.CreateTopic(ctx, 1, -1, cfg, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	return nil
}
