package butter

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// Span is the handler's span (docs/worker-protocol.md, "Spans"). When the
// pool traces the call, it records the attributes and events the handler
// adds and goes back to the pool with the call's result, which exports it
// as the child of the call's span; its Traceparent is what the handler's
// own calls pass on. Otherwise it records nothing, and its Traceparent is
// the invocation's.
type Span struct {
	recording   bool
	id          string
	traceparent string
	start       int64
	mu          sync.Mutex
	attrs       map[string]any
	events      []proto.SpanEvent
}

func newSpan(meta map[string]string) *Span {
	tp := meta["ce_traceparent"]
	s := &Span{traceparent: tp}
	if meta[proto.MetaSpan] != "1" || len(tp) != 55 {
		return s
	}
	// Random as OpenTelemetry's own span ids are (math/rand, not a
	// system call per call): unique, not secret. Never zero.
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], rand.Uint64()|1)
	// The traceparent in one allocation; the id is its span id.
	var b [55]byte
	copy(b[:36], tp[:36]) // "00-<trace id>-"
	hex.Encode(b[36:52], id[:])
	copy(b[52:], tp[52:]) // "-<flags>"
	s.traceparent = string(b[:])
	s.recording, s.id, s.start = true, s.traceparent[36:52], time.Now().UnixNano()
	return s
}

// Span returns the handler's span. It is never nil.
func (c *Call) Span() *Span {
	if c.span == nil {
		c.span = newSpan(c.Meta)
	}
	return c.span
}

// Traceparent is the W3C traceparent the handler's own calls pass on, ""
// when the call has none.
func (s *Span) Traceparent() string { return s.traceparent }

// Recording reports whether the span goes back to the pool.
func (s *Span) Recording() bool { return s.recording }

// SetAttribute sets an attribute of the span: a string, number or
// boolean (anything else is exported as its JSON text).
func (s *Span) SetAttribute(key string, value any) *Span {
	if !s.recording {
		return s
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attrs == nil {
		s.attrs = map[string]any{}
	}
	s.attrs[key] = value
	return s
}

// AddEvent adds an event, now, with its attributes (which may be nil).
func (s *Span) AddEvent(name string, attrs map[string]any) *Span {
	if !s.recording {
		return s
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, proto.SpanEvent{Name: name, TimeNS: time.Now().UnixNano(), Attributes: attrs})
	return s
}

// result is the RESULT's span; nil when it records nothing.
func (s *Span) result() *proto.SpanMsg {
	if s == nil || !s.recording {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &proto.SpanMsg{ID: s.id, StartNS: s.start, EndNS: time.Now().UnixNano(), Attributes: s.attrs, Events: s.events}
}
