package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// CloudEvents 1.0 in Kafka binary mode: attributes travel as record
// headers named ce_<attribute>; the record value is the event data and
// the record key is the partition key. docs/events.md lists them.
const (
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderSpecVersion = "ce_specversion"
	HeaderTime        = "ce_time"
	HeaderContentType = "content-type"
	// Extensions.
	HeaderTraceparent = "ce_traceparent"
	HeaderDeadline    = "ce_deadline" // RFC 3339
	HeaderReplyTo     = "ce_replyto"
	HeaderCorrelation = "ce_correlationid"
	// Dead letters.
	HeaderErrorType    = "ce_errortype"
	HeaderErrorMessage = "ce_errormessage"
	HeaderAttempts     = "ce_attempts"
	// HeaderErrorDetails is a dead letter's schema violations, as a JSON
	// array of {"pointer", "message"} (plugins/pool, "Schemas enforced").
	HeaderErrorDetails = "ce_errordetails"
	HeaderOrigin       = "ce_origintopic"
	// HeaderErrorFunction names the function that dead-lettered the
	// event: a stream's default dead-letter topic (<topic>.dlq) holds
	// every failing consumer's.
	HeaderErrorFunction = "ce_errorfunction"
	// HeaderReplayedFrom is on an event the control plane wrote back from
	// a dead-letter topic: the dead letter's topic/partition/offset.
	HeaderReplayedFrom = "ce_replayedfrom"
)

// Header returns the value of a record header, or "".
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// SetHeader sets a record header, replacing an existing one.
func SetHeader(r *kgo.Record, key, value string) {
	for i, h := range r.Headers {
		if h.Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// NewEvent returns a record carrying a CloudEvent with the given id,
// source and type.
func NewEvent(topic string, key, value []byte, id, source, typ string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: key, Value: value}
	SetHeader(r, HeaderSpecVersion, "1.0")
	SetHeader(r, HeaderID, id)
	SetHeader(r, HeaderSource, source)
	SetHeader(r, HeaderType, typ)
	SetHeader(r, HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	return r
}

// Attempts reads the attempt count of a dead letter.
func Attempts(r *kgo.Record) int {
	n, _ := strconv.Atoi(Header(r, HeaderAttempts))
	return n
}

type headersKey struct{}

// WithHeaders returns ctx carrying headers that Requester.Call sets on
// the request event it sends: the gateway passes the ce_http* attributes
// and the trace context of a queued route's request so.
func WithHeaders(ctx context.Context, headers map[string]string) context.Context {
	return context.WithValue(ctx, headersKey{}, headers)
}

// HeadersOf returns the headers ctx carries (WithHeaders), or nil.
func HeadersOf(ctx context.Context) map[string]string {
	hs, _ := ctx.Value(headersKey{}).(map[string]string)
	return hs
}

// setContextHeaders sets on rec the headers ctx carries (WithHeaders),
// but those rec has already.
func setContextHeaders(ctx context.Context, rec *kgo.Record) {
	for k, v := range HeadersOf(ctx) {
		if Header(rec, k) == "" {
			SetHeader(rec, k, v)
		}
	}
}
