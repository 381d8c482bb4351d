package proto

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendInvoke appends the INVOKE payload of m to dst: the JSON object
// json.Marshal writes of m, its maps' keys sorted as json.Marshal sorts
// them (a worker that builds an object from the metadata, as the Node
// SDK's params, sees the same order on every call), with each pair of
// set over m.Meta's: its value replaces the one m.Meta has for its key,
// or adds it. A pool's call
// encodes one on its path, json.Marshal's reflection and sorting cost it
// microseconds, and set spares a traced call a copy of its metadata
// (docs/worker-protocol.md, "Spans").
func AppendInvoke(dst []byte, m InvokeMsg, set ...[2]string) ([]byte, error) {
	dst = append(dst, `{"function":`...)
	dst = appendString(dst, m.Function)
	dst = append(dst, `,"deadline":`...)
	dst = strconv.AppendInt(dst, m.Deadline, 10)
	if len(m.Options) > 0 {
		dst = append(dst, `,"options":`...)
		dst = appendMap(dst, m.Options, nil)
	}
	if len(m.Meta) > 0 || len(set) > 0 {
		dst = append(dst, `,"meta":`...)
		dst = appendMap(dst, m.Meta, set)
	}
	if m.State != nil {
		st, err := json.Marshal(m.State)
		if err != nil {
			return dst, err
		}
		dst = append(append(dst, `,"state":`...), st...)
	}
	return append(dst, '}'), nil
}

// appendMap appends m, with the pairs of set over its own (the last of
// set for a key wins), as a JSON object with its keys sorted.
func appendMap(dst []byte, m map[string]string, set [][2]string) []byte {
	var stack [32]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	for _, p := range set {
		if _, ok := m[p[0]]; !ok && !slices.Contains(keys, p[0]) {
			keys = append(keys, p[0])
		}
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for n, k := range keys {
		v := m[k]
		for _, p := range set {
			if p[0] == k {
				v = p[1]
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(appendString(dst, k), ':')
		dst = appendString(dst, v)
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string: as it is when it is printable
// ASCII without a quote or backslash (nearly every key and value of a
// call), otherwise as json.Marshal escapes it.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	return append(append(append(dst, '"'), s...), '"')
}

// DecodeInvoke decodes an INVOKE payload into m, a zero InvokeMsg, as
// json.Unmarshal does. The payloads AppendInvoke writes without a state
// (its fields in its order, no spaces) are read without reflection: each
// string that is plain (no escape, valid UTF-8) is a substring of one
// copy of the payload, the others go to json.Unmarshal one string at a
// time. Anything else (a state, spaces, another order, a null) goes to
// json.Unmarshal whole, which also says why a payload is refused.
//
// The reason is a Go worker's cost per call: json.Unmarshal of the
// metadata of a call through the gateway (a dozen pairs) took about 4 µs
// on the call's path (bench/NOTES.md).
func DecodeInvoke(b []byte, m *InvokeMsg) error {
	if (&invokeDecoder{b: b, s: string(b)}).decode(m) {
		return nil
	}
	*m = InvokeMsg{}
	return json.Unmarshal(b, m)
}

// invokeDecoder reads the INVOKE payload b (s is b as a string, whose
// substrings the decoded strings are) from i on.
type invokeDecoder struct {
	b []byte
	s string
	i int
}

// decode reads the whole payload into m, or reports false.
func (d *invokeDecoder) decode(m *InvokeMsg) bool {
	if !d.lit(`{"function":`) {
		return false
	}
	fn, ok := d.str()
	if !ok || !d.lit(`,"deadline":`) {
		return false
	}
	dl, rest, ok := jsonInt(d.b[d.i:])
	if !ok {
		return false
	}
	d.i = len(d.b) - len(rest)
	m.Function, m.Deadline = fn, dl
	if d.lit(`,"options":`) {
		if m.Options, ok = d.strMap(); !ok {
			return false
		}
	}
	if d.lit(`,"meta":`) {
		if m.Meta, ok = d.strMap(); !ok {
			return false
		}
	}
	return d.lit("}") && d.i == len(d.b)
}

// lit reads lit when the payload goes on with it.
func (d *invokeDecoder) lit(lit string) bool {
	if !strings.HasPrefix(d.s[d.i:], lit) {
		return false
	}
	d.i += len(lit)
	return true
}

// str reads a JSON string.
func (d *invokeDecoder) str() (string, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	start := d.i
	plain := true
	j := start + 1
	for ; j < len(d.b) && d.b[j] != '"'; j++ {
		switch c := d.b[j]; {
		case c == '\\':
			plain = false
			j++ // the escaped character, a quote among them
		case c < 0x20:
			return "", false // not JSON: json.Unmarshal says so
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	if j >= len(d.b) {
		return "", false
	}
	d.i = j + 1
	v := d.s[start+1 : j]
	if plain || !strings.Contains(v, `\`) && utf8.ValidString(v) {
		return v, true
	}
	if u, ok := unescape(v); ok {
		return u, true
	}
	var u string
	if json.Unmarshal(d.b[start:j+1], &u) != nil {
		return "", false
	}
	return u, true
}

// unescape reads the contents of a JSON string whose escapes are all of
// one character (\" \\ \/ \b \f \n \r \t) and whose bytes are valid
// UTF-8: a JSON-encoded header map, for one. Others (\u) are not read.
func unescape(v string) (string, bool) {
	if !utf8.ValidString(v) {
		return "", false
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch v[i] {
		case '"', '\\', '/':
			b = append(b, v[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		default:
			return "", false
		}
	}
	return string(b), true
}

// strMap reads a JSON object of strings.
func (d *invokeDecoder) strMap() (map[string]string, bool) {
	if !d.lit("{") {
		return nil, false
	}
	// Room for its pairs: a pair has four quotes (or more, escaped).
	m := make(map[string]string, bytes.Count(d.b[d.i:], []byte{'"'})/4)
	if d.lit("}") {
		return m, true
	}
	for {
		k, ok := d.str()
		if !ok || !d.lit(":") {
			return nil, false
		}
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		if d.lit("}") {
			return m, true
		}
		if !d.lit(",") {
			return nil, false
		}
	}
}
