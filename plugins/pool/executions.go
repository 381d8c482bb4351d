package pool

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The execution log (docs/observability.md, "Execution log"): a function
// with an executions block has each call recorded, its input, state
// before and after, output, emits, error and duration, as one JSON
// record (Execution) produced to one topic per tier of its retention,
// <project>._executions.<function>.<k>: tier k keeps records up to its
// age (retention.ms); a sampled tier ("one per 1m") gets the first call
// of each time bucket from each pool, keyed by the bucket, so that
// compaction keeps one per bucket (cleanup.policy=compact,delete), and
// readers (butter executions) keep the last of each key, whether
// compaction has run yet or not. A call costs one record, and one more
// per sampled tier at the start of a bucket. Recording
// never fails or slows a call: records are produced without waiting, and
// values over execMaxValue bytes are cut (Truncated).

// execMaxValue bounds each value an execution record keeps.
const execMaxValue = 64 << 10

// Execution is one record of the execution log.
type Execution struct {
	Time       time.Time `json:"time"`
	Function   string    `json:"function"`
	Revision   string    `json:"revision,omitempty"`
	Invocation string    `json:"invocation"`
	TraceID    string    `json:"trace_id,omitempty"`
	// Meta is the call's metadata (headers, path parameters, the
	// ce_* attributes) as the function saw it.
	Meta        map[string]string `json:"meta,omitempty"`
	Input       json.RawMessage   `json:"input,omitempty"`
	InputBase64 string            `json:"input_base64,omitempty"`
	// StateKey, StateBefore and StateAfter are a function with state's:
	// the key, and its value before and after the call (StateAfter null
	// when the call deleted it or left it unchanged: StateChanged says).
	StateKey     string          `json:"state_key,omitempty"`
	StateBefore  json.RawMessage `json:"state_before,omitempty"`
	StateAfter   json.RawMessage `json:"state_after,omitempty"`
	StateChanged bool            `json:"state_changed,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"`
	OutputBase64 string          `json:"output_base64,omitempty"`
	Emits        []ExecEmit      `json:"emits,omitempty"`
	Error        *ExecError      `json:"error,omitempty"`
	DurationMS   float64         `json:"duration_ms"`
	// Truncated is set when a value was longer than the log keeps.
	Truncated bool `json:"truncated,omitempty"`
}

// ExecEmit is an emit of a recorded call.
type ExecEmit struct {
	Stream      string          `json:"stream"`
	Key         string          `json:"key,omitempty"`
	Value       json.RawMessage `json:"value,omitempty"`
	ValueBase64 string          `json:"value_base64,omitempty"`
}

// ExecError is a recorded call's failure.
type ExecError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Headers of an execution record: its tier's age and rate.
const (
	HeaderExecAge    = "butter_exec_age"
	HeaderExecOnePer = "butter_exec_one_per"
)

// ExecTopic is the topic of tier k of function's execution log.
func ExecTopic(project, function string, k int) string {
	return names.Topic(project, "_executions."+function+"."+strconv.Itoa(k))
}

// execTier is one tier of a function's execution log.
type execTier struct {
	age, onePer time.Duration
}

// execLog is a function's execution log settings.
type execLog struct {
	tiers  []execTier
	redact [][]string // field paths, split at dots
	// last is, for each sampled tier, the last bucket recorded.
	last []atomic.Int64
}

func newExecLog(c *ExecutionsConfig) (*execLog, error) {
	l := &execLog{}
	for i, k := range c.Keep {
		age, err := parseDuration(k.Age, false)
		if err != nil || age <= 0 {
			return nil, fmt.Errorf("executions keep %d: age %q is not a duration", i, k.Age)
		}
		t := execTier{age: age}
		if k.OnePer != "" {
			if t.onePer, err = parseDuration(k.OnePer, false); err != nil || t.onePer <= 0 {
				return nil, fmt.Errorf("executions keep %d: one_per %q is not a duration", i, k.OnePer)
			}
		}
		l.tiers = append(l.tiers, t)
	}
	if len(l.tiers) == 0 {
		return nil, errors.New("executions: no keep tier")
	}
	l.last = make([]atomic.Int64, len(l.tiers))
	for _, f := range c.Redact {
		l.redact = append(l.redact, strings.Split(f, "."))
	}
	return l, nil
}

// topics are the log's topics, to create.
func (l *execLog) topics(project, function string) []broker.Topic {
	var out []broker.Topic
	for k, t := range l.tiers {
		out = append(out, broker.Topic{Name: ExecTopic(project, function, k), Partitions: 1, Retention: t.age, Compact: t.onePer > 0, AlsoDelete: t.onePer > 0})
	}
	return out
}

// execRec records one call while it runs.
type execRec struct {
	start    time.Time
	in, out  capBuffer
	mu       sync.Mutex // emits come from the call's CALL frames
	emits    []ExecEmit
	stateKey string
	before   []byte
	after    []byte
	changed  bool
	hasState bool
	// took, err and meta are set when the call ends (endExec).
	took time.Duration
	err  error
	meta map[string]string
}

// capBuffer keeps the first execMaxValue bytes written to it.
type capBuffer struct {
	b         []byte
	truncated bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := execMaxValue - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
		c.truncated = c.truncated || len(p) > room
	} else if len(p) > 0 {
		c.truncated = true
	}
	return len(p), nil
}

// teeWriter writes to w and keeps a copy in c.
type teeWriter struct {
	w io.Writer
	c *capBuffer
}

func (t teeWriter) Write(p []byte) (int, error) {
	_, _ = t.c.Write(p)
	return t.w.Write(p)
}

// beginExec starts recording call c of f, when f has an execution log
// and the pool ships to Kafka: it tees c's input and output and watches
// its emits. nil when there is nothing to record.
func (p *Pool) beginExec(f *fnPool, c *Call) *execRec {
	if f.exec == nil || p.shipper.Load() == nil {
		return nil
	}
	r := &execRec{start: time.Now()}
	if c.Input != nil {
		c.Input = io.TeeReader(c.Input, &r.in)
	}
	if c.Output != nil {
		c.Output = teeWriter{w: c.Output, c: &r.out}
	} else {
		c.Output = &r.out
	}
	if calls := c.Calls; calls != nil {
		c.Calls = func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg {
			reply := calls(ctx, call)
			if call.Op == "emit" && reply.Error == "" {
				e := ExecEmit{Stream: call.Stream, Key: call.Key}
				e.Value, e.ValueBase64 = execValue(call.Value)
				r.mu.Lock()
				r.emits = append(r.emits, e)
				r.mu.Unlock()
			}
			return reply
		}
	}
	c.exec = r
	return r
}

// state records the call's state key and value before it ran.
func (r *execRec) state(key string, before []byte) {
	if r != nil {
		r.hasState, r.stateKey, r.before = true, key, before
	}
}

// newState records the state the call left.
func (r *execRec) newState(ns *proto.StateMsg) {
	if r == nil || ns == nil {
		return
	}
	r.changed = true
	if !ns.Deleted && string(ns.Value) != "null" {
		r.after = ns.Value
	}
}

// endExec queues the record of the call c of f, which ended with err,
// for the shipper's goroutine (shipExecs): the call pays a lock and an
// append, and the record's encoding and producing run beside the calls.
// The records of a window (execDelay, or execWindow records) go to the
// shipper at once, so that a call does not wake a goroutine each (a wake
// costs the call more than the rest of its record: bench/NOTES.md). When
// execQueueMax records wait already, the record is dropped and counted.
func (p *Pool) endExec(f *fnPool, c *Call, r *execRec, err error) {
	s := p.shipper.Load()
	if r == nil || s == nil {
		return
	}
	r.took, r.err, r.meta = time.Since(r.start), err, c.Meta
	s.execMu.Lock()
	defer s.execMu.Unlock()
	switch {
	case s.execsClosed:
		return // the pool stopped: the call's record is lost with it
	case len(s.execQ) >= execQueueMax:
		p.opts.metrics.execDropped.WithLabelValues(f.cfg.Name).Inc()
		return
	}
	s.execQ = append(s.execQ, execDone{f: f, r: r})
	switch {
	case len(s.execQ) >= execWindow:
		s.kickLocked()
	case s.execTimer == nil:
		s.execTimer = time.AfterFunc(execDelay, func() {
			s.execMu.Lock()
			defer s.execMu.Unlock()
			if !s.execsClosed {
				s.kickLocked()
			}
		})
	}
}

// The execution log's queue: a window's records go to the shipper after
// execDelay, or once execWindow of them wait; at most execQueueMax wait.
// The log's producer lingers 20 ms anyway (startLogs).
const (
	execDelay    = 10 * time.Millisecond
	execWindow   = 256
	execQueueMax = 1024
)

// kickLocked wakes the shipper, with execMu held and execKick open.
func (s *logShipper) kickLocked() {
	select {
	case s.execKick <- struct{}{}:
	default: // a wake is pending already
	}
}

// execDone is a recorded call, queued for shipping.
type execDone struct {
	f *fnPool
	r *execRec
}

// shipExecs encodes and produces the queued records as the windows end,
// and those left when the pool stops.
func (p *Pool) shipExecs(s *logShipper) {
	for {
		_, open := <-s.execKick
		s.execMu.Lock()
		batch := s.execQ
		s.execQ = nil
		if s.execTimer != nil {
			s.execTimer.Stop()
			s.execTimer = nil
		}
		s.execMu.Unlock()
		for _, d := range batch {
			p.shipExec(s, d.f, d.r)
		}
		if !open {
			return
		}
	}
}

// shipExec encodes the record of a call of f and produces it to each of
// the log's tiers.
func (p *Pool) shipExec(s *logShipper, f *fnPool, r *execRec) {
	meta, err := r.meta, r.err
	info := runtime.CallInfo{ID: meta[broker.HeaderID], Traceparent: meta[broker.HeaderTraceparent]}
	e := Execution{Time: r.start.UTC(), Function: f.cfg.Name, Revision: p.cfg.Revision, Invocation: info.ID,
		DurationMS: float64(r.took.Microseconds()) / 1000, Truncated: r.in.truncated || r.out.truncated}
	if tp := info.Traceparent; len(tp) == 55 {
		e.TraceID = tp[3:35]
	}
	if len(meta) > 0 {
		e.Meta = make(map[string]string, len(meta))
		for k, v := range meta {
			if k != broker.HeaderTraceparent && k != "traceparent" && k != "tracestate" {
				e.Meta[k] = v
			}
		}
	}
	f.mu.Lock()
	secretVals := f.secretVals
	f.mu.Unlock()
	clean := func(b []byte) []byte { return f.exec.scrub(b, secretVals) }
	e.Input, e.InputBase64 = execValue(clean(r.in.b))
	e.Output, e.OutputBase64 = execValue(clean(r.out.b))
	r.mu.Lock()
	emits := r.emits
	r.mu.Unlock()
	for _, em := range emits {
		if em.Value != nil {
			em.Value = clean(em.Value)
		}
		e.Emits = append(e.Emits, em)
	}
	if r.hasState {
		e.StateKey = r.stateKey
		e.StateBefore, _ = execValue(clean(r.before))
		e.StateAfter, _ = execValue(clean(r.after))
		e.StateChanged = r.changed
	}
	if err != nil {
		fl := failureOf(f.cfg.Name, err)
		e.Error = &ExecError{Type: fl.Type, Message: string(clean([]byte(fl.Message)))}
	}
	v, merr := json.Marshal(e)
	if merr != nil {
		return
	}
	for k, t := range f.exec.tiers {
		key := f.cfg.Name + "/" + e.Invocation
		if t.onePer > 0 {
			// The first of each bucket: one record per bucket from this
			// pool, and compaction keeps the last of the pools'.
			bucket := r.start.UnixNano() / int64(t.onePer)
			if last := f.exec.last[k].Load(); bucket <= last || !f.exec.last[k].CompareAndSwap(last, bucket) {
				continue
			}
			key = f.cfg.Name + "/" + strconv.FormatInt(bucket, 10)
		}
		// The tier's rule rides on each record, so that a reader keeps
		// exactly what it says whatever the broker has cleaned yet.
		hs := []kgo.RecordHeader{{Key: HeaderExecAge, Value: []byte(t.age.String())}}
		if t.onePer > 0 {
			hs = append(hs, kgo.RecordHeader{Key: HeaderExecOnePer, Value: []byte(t.onePer.String())})
		}
		s.cl.Produce(context.Background(), &kgo.Record{Topic: ExecTopic(p.cfg.Project, f.cfg.Name, k), Key: []byte(key), Value: v, Headers: hs}, func(_ *kgo.Record, err error) {
			if err != nil {
				p.opts.metrics.execDropped.WithLabelValues(f.cfg.Name).Inc()
			}
		})
	}
}

// execValue is a value as the record keeps it: as JSON when it is JSON,
// else in base64. nil stays nil.
func execValue(b []byte) (json.RawMessage, string) {
	if len(b) == 0 {
		return nil, ""
	}
	if json.Valid(b) {
		return json.RawMessage(bytes.Clone(b)), ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

// redacted replaces what the log must not keep.
const redacted = "[redacted]"

// scrub removes from b the values of the fields l.redact names (when b is
// JSON) and every secret value of the function.
func (l *execLog) scrub(b []byte, secrets map[string]string) []byte {
	if len(b) == 0 {
		return b
	}
	if len(l.redact) > 0 && json.Valid(b) {
		var v any
		if json.Unmarshal(b, &v) == nil {
			changed := false
			for _, path := range l.redact {
				changed = redactPath(v, path) || changed
			}
			if changed {
				b, _ = json.Marshal(v)
			}
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 && bytes.Contains(b, []byte(s)) {
			b = bytes.ReplaceAll(b, []byte(s), []byte(redacted))
		}
	}
	return b
}

// redactPath replaces the value at path in v (through objects, and every
// element of an array on the way) and reports whether it found one.
func redactPath(v any, path []string) bool {
	switch x := v.(type) {
	case map[string]any:
		child, ok := x[path[0]]
		if !ok {
			return false
		}
		if len(path) == 1 {
			x[path[0]] = redacted
			return true
		}
		return redactPath(child, path[1:])
	case []any:
		found := false
		for _, el := range x {
			found = redactPath(el, path) || found
		}
		return found
	}
	return false
}

// execTopics are the execution logs' topics, which startLogs creates
// with the log topic.
func (p *Pool) execTopics() []broker.Topic {
	var out []broker.Topic
	for _, name := range p.Functions() {
		if f := p.fns[name]; f.exec != nil {
			out = append(out, f.exec.topics(p.cfg.Project, name)...)
		}
	}
	return out
}
