package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/butterfn/butter/plugins/pool"
)

// capturedLine is one line `butter invoke -local` prints for a record a
// function emitted, output or left as state: butter tail's line (the
// same decoding of key, CloudEvents headers and data) without partition,
// offset and timestamp, which a record that was never produced lacks,
// and with what wrote it.
type capturedLine struct {
	Kind       string            `json:"kind"`
	Function   string            `json:"function"`
	Stream     string            `json:"stream,omitempty"`
	Topic      string            `json:"topic"`
	Key        *string           `json:"key"`
	KeyBase64  string            `json:"key_base64,omitempty"`
	ID         string            `json:"id,omitempty"`
	Source     string            `json:"source,omitempty"`
	Type       string            `json:"type,omitempty"`
	Time       string            `json:"time,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Data       json.RawMessage   `json:"data,omitempty"`
	DataBase64 string            `json:"data_base64,omitempty"`
}

// writeCaptured writes the captured records to w, one JSON object a line.
func writeCaptured(w io.Writer, recs []pool.Captured) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, c := range recs {
		t := decodeRecord(c.Record)
		l := capturedLine{
			Kind: c.Kind, Function: c.Function, Stream: c.Stream, Topic: t.Topic,
			Key: t.Key, KeyBase64: t.KeyBase64, Source: t.Source, Type: t.Type, Time: t.Time,
			Headers: t.Headers, Data: t.Data, DataBase64: t.DataBase64,
		}
		if c.Kind != pool.CapturedState {
			// A state record has no ce_id: decodeRecord's made-up
			// <topic>-<partition>-<offset> would name no real record.
			l.ID = t.ID
		}
		if c.Kind == pool.CapturedState && c.Record.Value == nil {
			// A tombstone: the function deleted the key's state.
			l.Data = json.RawMessage("null")
		}
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("writing the captured records: %w", err)
		}
	}
	return nil
}
