package proto

import (
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestAppendInvoke: what AppendInvoke writes decodes to the message it
// was given, with set's pairs over its metadata, whatever the strings
// hold; and it is valid JSON.
func TestAppendInvoke(t *testing.T) {
	msgs := []InvokeMsg{
		{Function: "echo", Deadline: 1765000000123},
		{Function: "f", Options: map[string]string{"mode": "fast"}, Meta: map[string]string{"ce_id": "a/b", "ce_traceparent": "00-x"}},
		{Function: "f\"\\\n\x01é\u2028<>&", Deadline: -1, Meta: map[string]string{"k\"": "v\\", "ü": "\xff\xfe", "": ""}},
		{Function: "s", State: &StateMsg{Key: "k", Value: json.RawMessage(`{"n":1}`)}},
	}
	sets := [][][2]string{nil, {{"ce_traceparent", "00-call"}, {MetaSpan, "1"}}, {{"a", "1"}, {"a", "2"}}}
	for mi, m := range msgs {
		for _, set := range sets {
			b, err := AppendInvoke(nil, m, set...)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b) {
				t.Fatalf("AppendInvoke(%+v, %v) = %s: not JSON", m, set, b)
			}
			var got InvokeMsg
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := m
			if len(set) > 0 {
				want.Meta = maps.Clone(m.Meta)
				if want.Meta == nil {
					want.Meta = map[string]string{}
				}
				for _, s := range set {
					want.Meta[s[0]] = s[1]
				}
			}
			// json.Marshal's own encoding, decoded, is the reference
			// (invalid UTF-8 becomes U+FFFD in both).
			ref, _ := json.Marshal(want)
			var wantDec InvokeMsg
			_ = json.Unmarshal(ref, &wantDec)
			if !reflect.DeepEqual(got, wantDec) {
				t.Errorf("AppendInvoke(%+v, %v) decodes to %+v, want %+v", m, set, got, wantDec)
			}
			// Plain strings are written byte for byte as json.Marshal
			// writes them, keys sorted: a worker sees the metadata in
			// the same order on every call.
			if mi != 2 && string(b) != string(ref) {
				t.Errorf("AppendInvoke(%+v, %v) = %s, json.Marshal writes %s", m, set, b, ref)
			}
		}
	}
}

// FuzzAppendInvoke: any strings in any field decode back as json.Marshal's
// encoding of the same message does.
func FuzzAppendInvoke(f *testing.F) {
	f.Add("echo", "ce_id", "abc", "x", "1", int64(5))
	f.Fuzz(func(t *testing.T, fn, k, v, sk, sv string, dl int64) {
		if !utf8.ValidString(k) || !utf8.ValidString(v) || !utf8.ValidString(sk) {
			// Keys of invalid UTF-8 can collide once decoded (each bad
			// byte is U+FFFD), and which one wins is nobody's contract.
			t.Skip()
		}
		m := InvokeMsg{Function: fn, Deadline: dl, Options: map[string]string{v: k}, Meta: map[string]string{k: v}}
		b, err := AppendInvoke(nil, m, [2]string{sk, sv})
		if err != nil {
			t.Fatal(err)
		}
		var got InvokeMsg
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want := m
		want.Meta = map[string]string{k: v, sk: sv}
		ref, _ := json.Marshal(want)
		var wantDec InvokeMsg
		_ = json.Unmarshal(ref, &wantDec)
		if !reflect.DeepEqual(got, wantDec) {
			t.Fatalf("%s decodes to %+v, want %+v", b, got, wantDec)
		}
	})
}

func BenchmarkAppendInvoke(b *testing.B) {
	m := InvokeMsg{Function: "echo", Deadline: 1765000000123, Meta: map[string]string{}}
	for i, k := range []string{"content-length", "traceparent", "content-type", "ce_id", "ce_time", "ce_traceparent", "ce_httpmethod", "ce_httppath", "ce_httpquery", "ce_httpheaders", "ce_httproute", "ce_httpremoteaddr"} {
		m.Meta[k] = "value-" + string(rune('a'+i))
	}
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf, _ = AppendInvoke(buf[:0], m)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(m)
		}
	})
}
