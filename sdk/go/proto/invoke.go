package proto

import (
	"encoding/json"
	"slices"
	"strconv"
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
