package proto

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// AppendInvoke appends the INVOKE payload of m to dst: the JSON object
// json.Marshal writes of m, but for the order of the keys of its maps
// (json.Marshal sorts them; this writes them as the map ranges, which a
// decoder does not see), with each pair of set over m.Meta's: its value
// replaces the one m.Meta has for its key, or adds it. A pool's call
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

// appendMap appends m, with the pairs of set over its own, as a JSON
// object.
func appendMap(dst []byte, m map[string]string, set [][2]string) []byte {
	dst = append(dst, '{')
	first := true
	pair := func(k, v string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(appendString(dst, k), ':')
		dst = appendString(dst, v)
	}
outer:
	for k, v := range m {
		for _, s := range set {
			if s[0] == k {
				continue outer // written below
			}
		}
		pair(k, v)
	}
	for i, s := range set {
		dup := false
		for _, t := range set[i+1:] {
			dup = dup || t[0] == s[0] // the last one wins
		}
		if !dup {
			pair(s[0], s[1])
		}
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
