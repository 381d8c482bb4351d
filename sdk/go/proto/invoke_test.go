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

// gatewayInvoke is the INVOKE of a call through a gateway route: the
// metadata a pool sends the worker (plugins/pool/http.go), its headers
// as the JSON string the gateway makes of them.
var gatewayInvoke = InvokeMsg{Function: "echo", Deadline: 1765000000123, Meta: map[string]string{
	"content-length": "13", "content-type": "text/plain", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"ce_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "ce_time": "2026-12-06T11:40:00.123456789Z", "ce_traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"ce_httpmethod": "POST", "ce_httppath": "/echo", "ce_httpquery": "", "ce_httproute": "POST /echo",
	"ce_httpheaders": `{"Accept":["*/*"],"Content-Type":["text/plain"],"User-Agent":["wrk"]}`, "ce_httpremoteaddr": "127.0.0.1:41234",
}}

// TestDecodeInvoke: what AppendInvoke writes is read by the fast path,
// and every payload, those a character away from it included, decodes as
// json.Unmarshal decodes it.
func TestDecodeInvoke(t *testing.T) {
	for _, m := range []InvokeMsg{
		gatewayInvoke,
		{Function: "echo"},
		{Function: "f", Deadline: -1, Options: map[string]string{"mode": "fast"}, Meta: map[string]string{"k": "v"}},
		{Function: "f\"\\\n\x01é\u2028<>&", Meta: map[string]string{"k\"": "v\\", "ü": "é", "": ""}},
	} {
		b, err := AppendInvoke(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		var got InvokeMsg
		if !(&invokeDecoder{b: b, s: string(b)}).decode(&got) {
			t.Errorf("%s: not read by the fast path", b)
		}
		checkInvoke(t, b)
	}
	for _, in := range []string{
		`{"function":"echo","deadline":0}`,
		`{"function":"echo","deadline":-0,"meta":{}}`,
		`{"function":"echo","deadline":5,"options":{},"meta":{"a":"1","a":"2"}}`,
		`{"function":"a\u0062","deadline":5,"meta":{"k\/":"\ud83d\ude00","x":"\ud800"}}`,
		`{"function":"bad utf8 \xff","deadline":5}`,
		// Each goes to json.Unmarshal, which decodes it or refuses it.
		`{"function":"echo","deadline":5,"state":{"key":"k","value":{"n":1}}}`,
		`{"function":"echo","deadline":5,"meta":{"k":null}}`,
		`{"function":"echo","deadline":5,"meta":null}`,
		`{"function":"echo","deadline":5,"meta":{"k":1}}`,
		`{"function":"echo","deadline":5,"meta":{"k":"v",}}`,
		`{"function":"echo","deadline":5,"meta":{"k":"v"}`,
		`{"function":"echo","deadline":5,"meta":{"k":"v"}} `,
		`{"function":"echo","deadline":5,"meta":{"k":"v\"}}`,
		`{"function":"echo","deadline":5,"meta":{"k":"a` + "\n" + `b"}}`,
		`{"function":"echo","deadline":5,"meta":{"k":"a` + "\t" + `b"}}`,
		`{"function":"echo","deadline":05}`,
		`{"function":"echo","deadline":5.5}`,
		`{"function":"echo","deadline":1e3}`,
		`{"function":"echo","deadline":9223372036854775808}`,
		`{"function":"echo","deadline":"5"}`,
		`{"deadline":5,"function":"echo"}`,
		`{"Function":"echo","deadline":5}`,
		`{"function":"echo","deadline":5,"meta":{"a":"1"},"options":{"b":"2"}}`,
		`{"function":"echo","deadline":5,"function":"other"}`,
		`{ "function":"echo","deadline":5}`,
		`{"function":"echo\`,
		`{"function":"echo`,
		`{}`,
		``,
	} {
		checkInvoke(t, []byte(in))
	}
}

// FuzzDecodeInvoke: whatever the payload, DecodeInvoke and
// json.Unmarshal agree on whether it decodes and on what it decodes to.
func FuzzDecodeInvoke(f *testing.F) {
	b, _ := AppendInvoke(nil, gatewayInvoke)
	f.Add(b)
	f.Add([]byte(`{"function":"f","deadline":-1,"options":{"m":"x"},"meta":{"k\"":"\u00e9"}}`))
	f.Fuzz(func(t *testing.T, in []byte) { checkInvoke(t, in) })
}

func checkInvoke(t *testing.T, in []byte) {
	t.Helper()
	var got, want InvokeMsg
	gotErr := DecodeInvoke(in, &got)
	wantErr := json.Unmarshal(in, &want)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: DecodeInvoke's error %v, json.Unmarshal's %v", in, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: DecodeInvoke gives %+v, json.Unmarshal %+v", in, got, want)
	}
}

func BenchmarkDecodeInvoke(b *testing.B) {
	in, _ := AppendInvoke(nil, gatewayInvoke)
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var m InvokeMsg
			_ = DecodeInvoke(in, &m)
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var m InvokeMsg
			_ = json.Unmarshal(in, &m)
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
