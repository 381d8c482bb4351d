package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Emits without Kafka. The records a function emits from a call that did
// not come from a stream event (an HTTP call, a RunPipeline step) go to
// the pool's Emitter: by default the pool's Kafka producer, once
// StartStreams connected it; with WithCapture, a Capture, which keeps
// them in memory. `butter invoke -local` runs its pool with a Capture and
// prints what it holds after the answer, so that a function that emits
// runs, and can be checked, without any Kafka.
//
// The records are built by the same code either way (httpCalls), so a
// captured emit has the topic, key, CloudEvents headers and value that
// the pool would have produced; only the last step, producing, differs.

// An Emitter produces a record function emitted, and returns once it is
// safe (acknowledged, for Kafka): the function's emit returns then.
type Emitter interface {
	Emit(ctx context.Context, function string, rec *kgo.Record) error
}

// kafkaEmitter is the default Emitter: the pool's producer.
type kafkaEmitter struct{ cl *kgo.Client }

func (k kafkaEmitter) Emit(ctx context.Context, _ string, rec *kgo.Record) error {
	return k.cl.ProduceSync(ctx, rec).FirstErr()
}

// emitter is the pool's Emitter, or nil when it has none: no capture, and
// no Kafka attached yet.
func (p *Pool) emitter() Emitter {
	if p.opts.capture != nil {
		return p.opts.capture
	}
	if p.producer != nil {
		return kafkaEmitter{p.producer}
	}
	return nil
}

// WithCapture makes the pool keep in c, instead of producing them to
// Kafka, the records its functions emit from HTTP calls and RunPipeline
// steps, and makes RunPipeline capture the output of each step whose
// function has an output stream and, once the pipeline ends, the state
// of its functions with state. Stream consumers (StartStreams) still
// produce to Kafka.
func WithCapture(c *Capture) Option { return func(o *options) { o.capture = c } }

// Kinds of captured records.
const (
	CapturedEmit   = "emit"   // a function's emit
	CapturedOutput = "output" // a call's output, to the function's output stream
	CapturedState  = "state"  // a key's state, as the changelog would hold it
)

// Captured is a record a Capture holds.
type Captured struct {
	Kind     string // CapturedEmit, CapturedOutput or CapturedState
	Function string // the function that wrote it
	// Stream is the record's stream, as the spec names it ("alerts" for
	// the topic "iot.alerts"); empty for a state record, whose topic is
	// the function's changelog.
	Stream string
	Record *kgo.Record // topic, key, headers and value, as produced
}

// Capture is an Emitter that keeps the records in memory, in the order
// they came. It is safe for concurrent use.
type Capture struct {
	project string // set by the pool that uses it, to name streams
	mu      sync.Mutex
	recs    []Captured
}

// NewCapture returns an empty Capture for the pool of project.
func NewCapture(project string) *Capture { return &Capture{project: project} }

// Emit keeps rec as an emit of function.
func (c *Capture) Emit(_ context.Context, function string, rec *kgo.Record) error {
	c.add(CapturedEmit, function, rec)
	return nil
}

func (c *Capture) add(kind, function string, rec *kgo.Record) {
	stream := ""
	if kind != CapturedState {
		stream = strings.TrimPrefix(rec.Topic, c.project+".")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, Captured{Kind: kind, Function: function, Stream: stream, Record: rec})
}

// Records returns the records captured so far, in order.
func (c *Capture) Records() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs)
}

// localCall returns the call of a RunPipeline step of function f, with
// in and out, and the function that ends it: given the call's error, it
// captures the step's output and returns the error the step ends with.
// Without a capture, the call is as it always was: no context calls but
// deadline, and nothing to end.
func (p *Pool) localCall(f *fnPool, seq int, c *Call) (*Call, func(error) error) {
	capt := p.opts.capture
	if capt == nil || f == nil {
		return c, func(err error) error { return err }
	}
	// An id of its own for each call, as the invoke endpoint gives one
	// to each request: its emits' ids derive from it.
	id := "local-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(seq)
	ef := &emitFailure{}
	cc := *c
	// The metadata an HTTP call gets (its id, time and trace context), so
	// that the function's ctx.event and the records are as on the invoke
	// endpoint.
	cc.Meta = make(map[string]string, len(c.Meta)+3)
	for k, v := range c.Meta {
		cc.Meta[k] = v
	}
	httpMeta(cc.Meta, id)
	o := p.httpOrigin(f, id, cc.Meta)
	calls := p.httpCalls(f, o, ef)
	key := c.StateKey
	logs := f.fn.Logs
	cc.Calls = func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg {
		switch {
		case call.Op == "emit" && call.Key == "" && key != "":
			// The step's key is the key of the event it stands for:
			// an emit that names none gets it, as a stream event's
			// emits do.
			call.Key = key
		case call.Op == "log" && logs != nil:
			// Where the function's own output goes: the person
			// running it reads ctx.log there.
			level := call.Level
			if level == "" {
				level = "info"
			}
			fmt.Fprintf(logs, "%s: %s\n", level, call.Message)
			return proto.ReplyMsg{Seq: call.Seq, OK: true}
		}
		return calls(ctx, call)
	}
	var out *teeOutput
	if f.cfg.Output != "" {
		out = &teeOutput{w: c.Output}
		cc.Output = out
	}
	return &cc, func(err error) error {
		err = ef.or(err)
		if err != nil || out == nil || len(out.buf) == 0 {
			// A failed call produces no output; an empty output is no
			// record (issue 16, item 2).
			return err
		}
		if se := p.checkOutput(f, out.buf, false, true); se != nil {
			return se
		}
		var k []byte
		if key != "" {
			k = []byte(key)
		}
		// As a stream event's call writes them (consumer.succeeded):
		// one record, or one per item of the outputs envelope.
		if !isEnvelope(out.buf) {
			capt.add(CapturedOutput, f.cfg.Name, o.record(f.cfg.Output, k, out.buf, "output", 0))
			return nil
		}
		outs, _ := outputs(out.buf) // checked already (checkOutput)
		for _, x := range outs {
			xk := x.key
			if xk == nil {
				xk = k
			}
			capt.add(CapturedOutput, f.cfg.Name, o.record(f.cfg.Output, xk, x.value, "output", x.index))
		}
		return nil
	}
}

// seedState gives each of the functions with state the states, by key,
// in memory, before a pipeline runs (Event.State).
func (p *Pool) seedState(ctx context.Context, functions []string, states map[string][]byte) error {
	if len(states) == 0 {
		return nil
	}
	seeded := false
	for _, name := range functions {
		f := p.fns[name]
		if f == nil || f.state == nil {
			continue
		}
		s := f.state
		s.mu.Lock()
		attached := s.cl != nil
		s.mu.Unlock()
		if attached {
			return fmt.Errorf("function %s: its state is in its changelog topic %s: a pipeline's state is given only to a pool without Kafka", name, s.topic)
		}
		for k, v := range states {
			if !json.Valid(v) {
				return fmt.Errorf("the state of key %q is not JSON: %.40q", k, v)
			}
			if len(v) > MaxStateBytes {
				return fmt.Errorf("the state of key %q is %d bytes; a state holds at most %d", k, len(v), MaxStateBytes)
			}
			if err := s.put(ctx, k, v); err != nil {
				return err
			}
		}
		seeded = true
	}
	if !seeded {
		return errors.New("a state is given, but no function of the pipeline has state")
	}
	return nil
}

// captureState captures, for each of the functions with state, the state
// of every key it holds in memory, as records of its changelog topic, and
// a tombstone (a record without a value) for each key of seeded it no
// longer holds.
func (p *Pool) captureState(functions []string, seeded map[string][]byte) {
	capt := p.opts.capture
	if capt == nil {
		return
	}
	seen := map[string]bool{}
	for _, name := range functions {
		f := p.fns[name]
		if f == nil || f.state == nil || seen[name] {
			continue
		}
		seen[name] = true
		s := f.state
		s.mu.Lock()
		keys := make([]string, 0, len(s.entries)+len(seeded))
		for k, e := range s.entries {
			if e.value != nil {
				keys = append(keys, k)
			}
		}
		for k := range seeded {
			if e := s.entries[k]; e == nil || e.value == nil {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			rec := &kgo.Record{Topic: StateTopic(p.cfg.Project, name), Key: []byte(k)}
			if e := s.entries[k]; e != nil && e.value != nil {
				rec.Value, rec.Timestamp = e.value, e.at
			}
			capt.add(CapturedState, name, rec)
		}
		s.mu.Unlock()
	}
}

// teeOutput passes a call's output on to w (when there is one) and keeps
// a copy.
type teeOutput struct {
	w   io.Writer
	buf []byte
}

func (t *teeOutput) Write(b []byte) (int, error) {
	t.buf = append(t.buf, b...)
	if t.w == nil {
		return len(b), nil
	}
	return t.w.Write(b)
}
