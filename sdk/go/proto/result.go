package proto

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// DecodeResult decodes a RESULT's payload into res, a zero ResultMsg, as
// json.Unmarshal does. The two payloads of nearly every call are read without
// reflection: "{}" (no state, no span, no error) and a span alone in the
// form the Go SDK writes, {"span":{"id":"<id>","start_ns":<n>,"end_ns":<n>}}
// (a traced call whose handler added nothing to its span). Anything else
// (other fields, spaces, escapes, another order) goes to json.Unmarshal.
//
// The reason is the pool's cost per traced call: json.Unmarshal of the
// span took about 4 µs on the call's path, in the pool's reader goroutine
// (bench/NOTES.md, "Tracing: where the added time went").
func DecodeResult(b []byte, res *ResultMsg) error {
	if string(b) == "{}" {
		*res = ResultMsg{}
		return nil
	}
	if sm, ok := spanOnly(b); ok {
		*res = ResultMsg{Span: sm}
		return nil
	}
	return json.Unmarshal(b, res)
}

// spanOnly reads b when it is exactly
// {"span":{"id":"<id>","start_ns":<n>,"end_ns":<n>}}, with an id of ASCII
// letters and digits and two decimal integers that fit an int64.
func spanOnly(b []byte) (*SpanMsg, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"span":{"id":"`))
	if !ok {
		return nil, false
	}
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return nil, false
	}
	id := rest[:q]
	if !simpleID(string(id)) {
		return nil, false
	}
	rest, ok = bytes.CutPrefix(rest[q+1:], []byte(`,"start_ns":`))
	if !ok {
		return nil, false
	}
	start, rest, ok := jsonInt(rest)
	if !ok {
		return nil, false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(`,"end_ns":`))
	if !ok {
		return nil, false
	}
	end, rest, ok := jsonInt(rest)
	if !ok || string(rest) != "}}" {
		return nil, false
	}
	return &SpanMsg{ID: string(id), StartNS: start, EndNS: end}, true
}

// jsonInt reads the JSON integer b begins with (an optional minus, then
// 0 or digits without a leading zero) and returns it and what follows.
func jsonInt(b []byte) (int64, []byte, bool) {
	n := 0
	if n < len(b) && b[n] == '-' {
		n++
	}
	digits := n
	for n < len(b) && '0' <= b[n] && b[n] <= '9' {
		n++
	}
	if n == digits || b[digits] == '0' && n > digits+1 {
		return 0, nil, false
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, 64)
	if err != nil {
		return 0, nil, false // out of range: json.Unmarshal says why
	}
	return v, b[n:], true
}

// AppendSpanResult appends the RESULT of a call whose only field is its
// span, sp, whose attributes and events are empty, to dst: what
// json.Marshal writes of ResultMsg{Span: sp}, without reflection.
func AppendSpanResult(dst []byte, sp *SpanMsg) []byte {
	dst = append(dst, `{"span":{"id":`...)
	if simpleID(sp.ID) {
		dst = append(append(append(dst, '"'), sp.ID...), '"')
	} else {
		id, _ := json.Marshal(sp.ID) // a string always encodes
		dst = append(dst, id...)
	}
	dst = append(dst, `,"start_ns":`...)
	dst = strconv.AppendInt(dst, sp.StartNS, 10)
	dst = append(dst, `,"end_ns":`...)
	dst = strconv.AppendInt(dst, sp.EndNS, 10)
	return append(dst, "}}"...)
}

// simpleID reports whether id is ASCII letters and digits only: a JSON
// string as it is, and the ids spanOnly reads.
func simpleID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
