package butter_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
)

// TestOutputs: the outputs envelope (docs/events.md, "Outputs").
func TestOutputs(t *testing.T) {
	b, err := butter.Outputs([]byte{0, 1}, "text", map[string]int{"x": 1}, nil, json.RawMessage(`[1]`), butter.Keyed{Key: "k2", Value: "b"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"butter.outputs":[{"base64":"AAE="},{"text":"text"},{"value":{"x":1}},{"value":null},{"value":[1]},{"key":"k2","text":"b"}]}`
	if string(b) != want {
		t.Errorf("%s\nwant\n%s", b, want)
	}
	if _, err := butter.Outputs(json.RawMessage(`{`)); err == nil {
		t.Error("a json.RawMessage that is not JSON was taken")
	}
	if _, err := butter.Outputs(func() {}); err == nil {
		t.Error("a func was taken")
	}
}

// TestEvent: Call.Event reads the event's metadata from its meta.
func TestEvent(t *testing.T) {
	c := &butter.Call{Meta: map[string]string{
		"ce_id": "e1", "ce_source": "src", "ce_type": "t", "ce_subject": "k", "ce_time": "2026-12-03T08:00:00Z", "butter.position": "in/2/41", "ce_traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "ce_ttl": "30s",
		"ce_httpmethod": "PUT", "ce_httppath": "/p", "ce_httpquery": "a=1", "ce_httpheaders": `{"x-a":"1"}`,
	}}
	want := butter.Event{ID: "e1", Source: "src", Type: "t", Subject: "k", Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), Stream: "in",
		Partition: 2, Offset: 41, Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TTL: 30 * time.Second,
		HTTP: &butter.HTTPRequest{Method: "PUT", Path: "/p", Query: "a=1", Headers: map[string]string{"x-a": "1"}}}
	if got := c.Event(); !reflect.DeepEqual(got, want) {
		t.Errorf("%+v\nwant\n%+v", got, want)
	}
	if e := (&butter.Call{}).Event(); e.Partition != -1 || e.Offset != -1 || e.HTTP != nil {
		t.Errorf("an HTTP call without metadata: %+v", e)
	}
}
