package butter

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is the metadata of the event a call handles (docs/events.md,
// "What a function sees"): its CloudEvents attributes, where it is on its
// stream, and, for an event that came from an HTTP route, the request.
type Event struct {
	ID, Source, Type string
	// Subject is the event's key.
	Subject string
	Time    time.Time // zero when unknown
	// Stream, Partition and Offset say where a stream event is; Partition
	// and Offset are -1 for a call that has no stream event (HTTP).
	Stream    string
	Partition int32
	Offset    int64
	// Traceparent is the call's W3C trace context.
	Traceparent string
	// TTL is the event's ce_ttl (0: none): it expires TTL after Time.
	TTL time.Duration
	// HTTP is the request of an event that came from an HTTP route, nil
	// otherwise.
	HTTP *HTTPRequest
}

// HTTPRequest is the HTTP request an event came from. Headers have
// lower-case names; the gateway leaves the credentials out
// (Authorization, Cookie, X-API-Key).
type HTTPRequest struct {
	Method, Path, Query string
	Headers             map[string]string
}

// position holds where a batch's event is: its butter.position
// ("<stream>/<partition>/<offset>") and ce_subject, which stay out of
// Call.Meta.
type position struct {
	at, subject string
}

// positionKey reports whether k is one of position's.
func positionKey(k string) bool { return k == "butter.position" || k == "ce_subject" }

// setPosition keeps k in c.pos when it is one of position's.
func (c *Call) setPosition(k, v string) bool {
	switch k {
	case "butter.position":
		c.pos.at = v
	case "ce_subject":
		c.pos.subject = v
	default:
		return false
	}
	return true
}

// splitPosition splits "<stream>/<partition>/<offset>".
func splitPosition(at string) (stream, partition, offset string) {
	i := strings.LastIndexByte(at, '/')
	if i < 0 {
		return "", "", ""
	}
	j := strings.LastIndexByte(at[:i], '/')
	if j < 0 {
		return "", "", ""
	}
	return at[:j], at[j+1 : i], at[i+1:]
}

// Event returns the metadata of the event the call handles. For a
// stream event of a batch, where it is (butter.position, ce_subject) is
// here, not in Meta.
func (c *Call) Event() Event {
	m := c.Meta
	pos := c.pos
	if pos == (position{}) {
		pos = position{at: m["butter.position"], subject: m["ce_subject"]}
	}
	stream, partition, offset := splitPosition(pos.at)
	e := Event{ID: m["ce_id"], Source: m["ce_source"], Type: m["ce_type"], Subject: pos.subject,
		Stream: stream, Partition: -1, Offset: -1, Traceparent: m["ce_traceparent"]}
	if t, err := time.Parse(time.RFC3339Nano, m["ce_time"]); err == nil {
		e.Time = t
	}
	if p, err := strconv.ParseInt(partition, 10, 32); err == nil {
		e.Partition = int32(p)
	}
	if o, err := strconv.ParseInt(offset, 10, 64); err == nil {
		e.Offset = o
	}
	if d, err := time.ParseDuration(m["ce_ttl"]); err == nil {
		e.TTL = d
	}
	if method := m["ce_httpmethod"]; method != "" {
		e.HTTP = &HTTPRequest{Method: method, Path: m["ce_httppath"], Query: m["ce_httpquery"], Headers: map[string]string{}}
		_ = json.Unmarshal([]byte(m["ce_httpheaders"]), &e.HTTP.Headers)
	}
	return e
}

// Keyed is an output with its own record key, for Outputs: the others
// take the input's key.
type Keyed struct {
	Key   string
	Value any
}

// Outputs returns several outputs as the handler's one output, the
// outputs envelope (docs/events.md, "Outputs"): each becomes a record of
// the function's output stream, with its own id. A []byte is written as
// is, a string as UTF-8, a json.RawMessage as that JSON, a Keyed with
// its key, nil as no output (its index is skipped), anything else as
// JSON. Return it from the handler:
//
//	return butter.Outputs(alert, butter.Keyed{Key: "audit", Value: entry})
//
// A plain []byte returned by a handler is always one output.
func Outputs(outs ...any) ([]byte, error) {
	items := make([]map[string]any, len(outs))
	for k, o := range outs {
		item := map[string]any{}
		if kv, ok := o.(Keyed); ok {
			item["key"] = kv.Key
			o = kv.Value
		}
		switch v := o.(type) {
		case []byte:
			item["base64"] = base64.StdEncoding.EncodeToString(v)
		case string:
			item["text"] = v
		case json.RawMessage:
			if !json.Valid(v) {
				return nil, fmt.Errorf("butter: output %d: not JSON", k)
			}
			item["value"] = v
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("butter: output %d: %w", k, err)
			}
			item["value"] = json.RawMessage(b)
		}
		items[k] = item
	}
	return json.Marshal(map[string]any{"butter.outputs": items})
}
