package pool

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// The records a pool writes and the metadata a call sees
// (docs/events.md, "Envelope" and "Outputs").
//
// Every output and emit of a call gets its own id, derived from the
// call's input and its place among the call's records:
// "<input id>/<function>/output/<k>" and "<input id>/<function>/emit/<k>",
// k counting from 0 in the call. A retried call makes the same records in
// the same order, so it produces the same ids, and a consumer dropping
// duplicates by id drops exactly the repeats. An HTTP call's input id is
// its request id.
//
// Each record carries the CloudEvents attributes (ce_id, ce_source,
// ce_type, ce_time, ce_specversion), ce_subject (the record key), the
// input's ce_traceparent (callTrace), ce_ttl when its input had one (the
// time left of it: outputs expire when their input does), and what it
// derives from: ce_inputid, and for a stream event ce_origintopic, where
// the input was ("<topic>/<partition>/<offset>", as on a dead letter).
// An HTTP call's records carry its route's ce_http* headers.

// Headers of the metadata (docs/events.md lists them).
const (
	headerSubject = "ce_subject"
	headerTTL     = "ce_ttl"
	headerInputID = "ce_inputid"
	// metaPosition is what a function sees of where its event is (meta),
	// beside its headers: "<stream>/<partition>/<offset>", one pair, not
	// three, since every pair costs a worker every event of a batch.
	metaPosition = "butter.position"
	// Expired is the error type of an event whose ce_ttl ran out before
	// it was handled: it is dead-lettered, never run.
	Expired = "Expired"
)

// origin is what a call's records derive from: its input, and the
// function handling it.
type origin struct {
	fn     string
	source string // the function's CloudEvent source
	id     string // the input's event id (an HTTP call's request id)
	key    []byte
	// traceparent is the call's trace context: the input's (a trace
	// derived from its id when it had none, hasTrace false).
	traceparent string
	hasTrace    bool
	idMissing   bool        // the input has no ce_id header
	hasSubject  bool        // its ce_subject header is its key
	expires     time.Time   // zero: no ttl
	input       *kgo.Record // the stream event, nil for an HTTP call
	stream      string      // input's stream name
	// partition is the input's, as text.
	partition string
	// http holds the ce_http* headers of an HTTP call's route.
	http map[string]string
	// span is the call's span while it runs (trace.go), nil when tracing
	// is off; spanned says traceparent is its, not the input's.
	span    trace.Span
	spanned bool
}

// origin is the origin of the records of the consumer's function's call
// on stream event r, whose id is id.
func (c *consumer) origin(r *kgo.Record, id string) *origin {
	o := &origin{}
	c.setOrigin(o, r, id)
	return o
}

// setOrigin makes o the origin of the call on stream event r, whose id is
// id: origin, for an origin allocated with others (a batch's).
func (c *consumer) setOrigin(o *origin, r *kgo.Record, id string) {
	*o = origin{fn: c.f.cfg.Name, source: c.source, id: id, key: r.Key, input: r,
		stream: strings.TrimPrefix(r.Topic, c.prefix), partition: strconv.Itoa(int(r.Partition))}
	var tp, ttl string
	o.idMissing = true
	for _, h := range r.Headers {
		switch h.Key {
		case broker.HeaderTraceparent:
			tp = string(h.Value)
		case headerTTL:
			ttl = string(h.Value)
		case broker.HeaderID:
			o.idMissing = len(h.Value) == 0
		case headerSubject:
			o.hasSubject = string(h.Value) == string(r.Key)
		}
	}
	o.traceparent, o.hasTrace = callTrace(tp, id)
	c.streamSpan(o, tp, o.hasTrace)
	if ttl != "" {
		o.expires, _ = expiry(r)
	}
}

// appendPosition appends where the input is, as a function sees it
// (metaPosition): "<stream>/<partition>/<offset>".
func (o *origin) appendPosition(dst []byte) []byte {
	dst = append(append(append(append(dst, o.stream...), '/'), o.partition...), '/')
	return strconv.AppendInt(dst, o.input.Offset, 10)
}

// httpMeta completes the metadata of an HTTP call whose request id is id
// (docs/events.md, "What a function sees"): its ce_id, ce_time and
// ce_traceparent (the caller's valid traceparent, or a trace derived
// from the request id, callTrace), and the
// route's ce_http* attributes, which the gateway sends as Ce-Http*
// headers, under their Kafka names.
func httpMeta(meta map[string]string, id string) {
	meta[broker.HeaderID] = id
	meta[broker.HeaderTime] = time.Now().UTC().Format(time.RFC3339Nano)
	meta[broker.HeaderTraceparent], _ = callTrace(meta["traceparent"], id)
	for k, v := range meta {
		if name, ok := strings.CutPrefix(k, "ce-http"); ok {
			meta["ce_http"+name] = v
		}
	}
}

// httpOrigin is the origin of the emits of an HTTP call of f whose
// request id is id and whose metadata is meta.
func (p *Pool) httpOrigin(f *fnPool, id string, meta map[string]string) *origin {
	o := &origin{fn: f.cfg.Name, source: names.EventSource(p.cfg.Project, f.cfg.Name), id: id}
	o.traceparent = meta[broker.HeaderTraceparent]
	for k, v := range meta {
		if strings.HasPrefix(k, "ce_http") {
			if o.http == nil {
				o.http = map[string]string{}
			}
			o.http[k] = v
		}
	}
	return o
}

// record is the k-th record of kind ("output" or "emit") of the call:
// value to topic, keyed by key. Its headers are those decorate adds, made
// at once: this is every output's path.
func (o *origin) record(topic string, key, value []byte, kind string, k int) *kgo.Record {
	// The values share one buffer: a header each would cost an
	// allocation each, on every output's path.
	n := 2*len(o.id) + len(o.fn) + len(o.source) + len(key) + len(o.traceparent) + len(o.stream) + len(o.partition) + 120
	for _, v := range o.http {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	// The record and its headers are one allocation too, but for an
	// HTTP call's records, which have more headers.
	var rec *kgo.Record
	var hs []kgo.RecordHeader
	if len(o.http) == 0 {
		rh := &recordWithHeaders{}
		rec, hs = &rh.rec, rh.hs[:0]
	} else {
		rec, hs = &kgo.Record{}, make([]kgo.RecordHeader, 0, recordHeaders+len(o.http))
	}
	var start int
	mark := func() { start = len(buf) }
	done := func(k string) { hs = append(hs, kgo.RecordHeader{Key: k, Value: buf[start:len(buf):len(buf)]}) }
	add := func(k, v string) {
		mark()
		buf = append(buf, v...)
		done(k)
	}
	add(broker.HeaderSpecVersion, "1.0")
	mark()
	buf = append(append(append(append(append(append(buf, o.id...), '/'), o.fn...), '/'), kind...), '/')
	buf = strconv.AppendInt(buf, int64(k), 10)
	done(broker.HeaderID)
	add(broker.HeaderSource, o.source)
	mark()
	buf = append(append(buf, "butter."...), kind...)
	done(broker.HeaderType)
	mark()
	buf = time.Now().UTC().AppendFormat(buf, time.RFC3339Nano)
	done(broker.HeaderTime)
	if len(key) > 0 {
		mark()
		buf = append(buf, key...)
		done(headerSubject)
	}
	if tp := o.sendTrace(topic, kind); tp != "" {
		add(broker.HeaderTraceparent, tp)
	}
	if !o.expires.IsZero() {
		add(headerTTL, o.ttlLeft())
	}
	add(headerInputID, o.id)
	if r := o.input; r != nil {
		mark()
		buf = strconv.AppendInt(append(append(append(append(buf, r.Topic...), '/'), o.partition...), '/'), r.Offset, 10)
		done(broker.HeaderOrigin)
	}
	for k, v := range o.http {
		add(k, v)
	}
	rec.Topic, rec.Key, rec.Value, rec.Headers = topic, key, value, hs
	return rec
}

// recordHeaders is the most headers record adds but an HTTP call's
// ce_http* ones.
const recordHeaders = 10

// recordWithHeaders is a record and its headers' array, allocated at once.
type recordWithHeaders struct {
	rec kgo.Record
	hs  [recordHeaders]kgo.RecordHeader
}

// ttlLeft is the ce_ttl of the call's records: the time its input has
// left.
func (o *origin) ttlLeft() string {
	return max(time.Until(o.expires), 0).Round(time.Millisecond).String()
}

// decorate adds the call's metadata to rec, leaving alone the headers
// rec has already.
func (o *origin) decorate(rec *kgo.Record) {
	set := func(k, v string) {
		if v != "" && broker.Header(rec, k) == "" {
			broker.SetHeader(rec, k, v)
		}
	}
	set(broker.HeaderSpecVersion, "1.0")
	set(broker.HeaderSource, o.source)
	if broker.Header(rec, broker.HeaderTime) == "" {
		set(broker.HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	}
	if len(rec.Key) > 0 {
		set(headerSubject, string(rec.Key))
	}
	set(broker.HeaderTraceparent, o.traceparent)
	if !o.expires.IsZero() {
		set(headerTTL, o.ttlLeft())
	}
	set(headerInputID, o.id)
	if r := o.input; r != nil {
		set(broker.HeaderOrigin, r.Topic+"/"+o.partition+"/"+strconv.FormatInt(r.Offset, 10))
	}
	for k, v := range o.http {
		set(k, v)
	}
}

// eventMeta returns the metadata a call of the event o.input sees beside
// its headers, which it overrides: where the event is (metaPosition),
// and its key (ce_subject), id and trace context when its headers lack
// them. n of the pairs are set. The position is written in pos, whose
// array the pair's value then shares: a batch copies the pairs into its
// frame, so they cost no allocation.
func (o *origin) eventMeta(pos []byte) (pairs [extraPairs]metaPair, n int) {
	add := func(k, v string) {
		pairs[n] = metaPair{key: k, s: v}
		n++
	}
	pairs[n] = metaPair{key: metaPosition, b: o.appendPosition(pos[:0])}
	n++
	if r := o.input; len(r.Key) > 0 && !o.hasSubject {
		pairs[n] = metaPair{key: headerSubject, b: r.Key}
		n++
	}
	if !o.hasTrace || o.spanned {
		add(broker.HeaderTraceparent, o.traceparent)
	}
	if o.id != "" && o.idMissing {
		add(broker.HeaderID, o.id)
	}
	return pairs, n
}

// metaPair is a pair of eventMeta: its value is b when b is not nil, else s.
type metaPair struct {
	key, s string
	b      []byte
}

// value is the pair's value as a string.
func (p metaPair) value() string {
	if p.b != nil {
		return string(p.b)
	}
	return p.s
}

// appendTo appends the pair to a BATCH payload (proto.AppendPair).
func (p metaPair) appendTo(dst []byte) []byte {
	if p.b != nil {
		return proto.AppendPair(dst, p.key, p.b)
	}
	return appendPairString(dst, p.key, p.s)
}

// extraPairs is how many pairs eventMeta may add to a record's headers.
const extraPairs = 6

// callTrace is the trace context of a call on the event id whose
// traceparent is parent: parent itself when it is a valid W3C
// traceparent (ok), passed on as the gateway does: Butter records no
// span of its own, so it invents none no backend would ever see. An
// event without one starts a trace, its ids derived from the event's id,
// so that a retried call has the same.
func callTrace(parent, id string) (tp string, ok bool) {
	if len(parent) == 55 && parent[:3] == "00-" && parent[35] == '-' && parent[52] == '-' && isHex(parent[3:35]) && isHex(parent[36:52]) && isHex(parent[53:]) &&
		parent[3:35] != "00000000000000000000000000000000" && parent[36:52] != "0000000000000000" {
		return parent, true
	}
	var b [55]byte // 00-<32>-<16>-<2>
	copy(b[:], "00-")
	b[35], b[52] = '-', '-'
	binary.BigEndian.PutUint64(b[3:], fnv64("trace/", id))
	binary.BigEndian.PutUint64(b[11:], fnv64("trace2/", id))
	hexInPlace(b[3:35], 16)
	binary.BigEndian.PutUint64(b[36:], fnv64("span/", id)|1) // never 0
	hexInPlace(b[36:52], 8)
	copy(b[53:], "01")
	return string(b[:]), false
}

// fnv64 is the 64-bit FNV-1a hash of a and b: cheap, and enough to make
// the ids of a trace.
func fnv64(a, b string) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range [...]string{a, b} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	return h
}

// hexInPlace writes the n bytes at the start of b as 2n hex digits over
// b.
func hexInPlace(b []byte, n int) {
	const digits = "0123456789abcdef"
	for i := n - 1; i >= 0; i-- {
		v := b[i]
		b[2*i], b[2*i+1] = digits[v>>4], digits[v&15]
	}
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newRequestID is the id of an HTTP call that came without one.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "http-" + hex.EncodeToString(b[:])
}

// expiry is when event r expires: its ce_time (its record's timestamp
// without one) plus its ce_ttl, a Go duration ("30s", "1m30s"); zero
// without a ce_ttl. A ce_ttl that is not a duration of at least 0 is an
// error naming it.
func expiry(r *kgo.Record) (time.Time, error) {
	ttl := broker.Header(r, headerTTL)
	if ttl == "" {
		return time.Time{}, nil
	}
	d, err := time.ParseDuration(ttl)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("header %s %q is not a duration such as 30s or 1m30s", headerTTL, ttl)
	}
	base := r.Timestamp
	if t, err := time.Parse(time.RFC3339Nano, broker.Header(r, broker.HeaderTime)); err == nil {
		base = t
	}
	return base.Add(d), nil
}

// expired returns the error an event r is dead-lettered with when its
// ce_ttl ran out (Expired) or is not a duration (PreconditionFailed), or
// nil.
func expired(r *kgo.Record) error {
	at, err := expiry(r)
	switch {
	case err != nil:
		return &proto.Error{Type: proto.PreconditionFailed, Message: err.Error() + "; the event was not run"}
	case !at.IsZero() && time.Now().After(at):
		return &proto.Error{Type: Expired, Message: fmt.Sprintf("the event expired at %s (%s %s + %s %s); it was not run",
			at.UTC().Format(time.RFC3339Nano), broker.HeaderTime, broker.Header(r, broker.HeaderTime), headerTTL, broker.Header(r, headerTTL))}
	}
	return nil
}

// The outputs envelope: a function returns several outputs as one JSON
// object whose only member is "butter.outputs", a list of outputs, each
// an object with one of "value" (any JSON, written as JSON), "text" (a
// string, written as UTF-8) or "base64" (bytes), and optionally "key"
// (the record's key; the input's by default). The SDKs' helpers write it
// (Go butter.Outputs, Node and Python outputs); an exec function prints
// it. Any other output is one output.
const outputsMember = "butter.outputs"

// output is one output of a call.
type output struct {
	value []byte
	key   []byte // nil: the input's
	index int    // its place in the call's outputs
}

// outputs splits out, a call's output, into its outputs: one, or, for the
// envelope, its list. An empty output is none, and so is an empty entry
// of the list (its index is skipped, not reused). An output that starts
// as the envelope but is not one is a PostconditionFailed.
func outputs(out []byte) ([]output, *SchemaError) {
	if len(out) == 0 {
		return nil, nil
	}
	if !isEnvelope(out) {
		return []output{{value: out}}, nil
	}
	bad := func(pointer, format string, args ...any) *SchemaError {
		return &SchemaError{Type: proto.PostconditionFailed, What: "the output", Field: `the outputs envelope {"butter.outputs": [...]}`,
			File: "docs/events.md", Violations: []Violation{{Pointer: pointer, Message: fmt.Sprintf(format, args...)}}}
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(out, &env); err != nil {
		return nil, bad("", "not JSON: %v", err)
	}
	if len(env) != 1 {
		return nil, bad("", `"butter.outputs" must be the object's only member`)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(env[outputsMember], &items); err != nil {
		return nil, bad("/"+outputsMember, "want a list of objects: %v", err)
	}
	var outs []output
	for k, item := range items {
		at := fmt.Sprintf("/%s/%d", outputsMember, k)
		o := output{index: k}
		n := 0
		for name, raw := range item {
			switch name {
			case "key":
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, bad(at+"/key", "want a string")
				}
				o.key = []byte(s)
			case "value":
				n++
				var v bytes.Buffer
				if err := json.Compact(&v, raw); err != nil {
					return nil, bad(at+"/value", "not JSON: %v", err)
				}
				if v.String() != "null" {
					o.value = v.Bytes()
				}
			case "text":
				n++
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, bad(at+"/text", "want a string")
				}
				o.value = []byte(s)
			case "base64":
				n++
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, bad(at+"/base64", "want a string")
				}
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return nil, bad(at+"/base64", "not base64: %v", err)
				}
				o.value = b
			default:
				return nil, bad(at+"/"+name, `unknown member: an output has one of "value", "text" or "base64", and may have "key"`)
			}
		}
		if n != 1 {
			return nil, bad(at, `an output has exactly one of "value", "text" or "base64"`)
		}
		if len(o.value) > 0 {
			outs = append(outs, o)
		}
	}
	return outs, nil
}

// isEnvelope reports whether out starts as the outputs envelope: "{",
// then "butter.outputs" as the first member's name, JSON white space
// allowed between.
func isEnvelope(out []byte) bool {
	const ws = " \t\r\n"
	out = bytes.TrimLeft(out, ws)
	if len(out) == 0 || out[0] != '{' {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(out[1:], ws), []byte(`"`+outputsMember+`"`))
}

// emitIndex is the index of emit call among its call's emits: the number
// the SDK gave it (from 1), or, without one, the order its CALL came in.
func (e *emitFailure) emitIndex(call proto.CallMsg) int {
	if call.Number > 0 {
		return call.Number - 1
	}
	return int(e.emitted.Add(1) - 1)
}
