package proto

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDecodeResult: the payloads the fast paths read, and payloads a
// character away from them, decode as json.Unmarshal decodes them, and
// the fast paths do take the payloads the Go SDK writes.
func TestDecodeResult(t *testing.T) {
	sdk, err := json.Marshal(ResultMsg{Span: &SpanMsg{ID: "00f067aa0ba902b7", StartNS: 1765000000123456789, EndNS: 1765000000123999999}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := spanOnly(sdk); !ok {
		t.Fatalf("the Go SDK's span alone, %s, is not read by the fast path", sdk)
	}
	for _, sp := range []*SpanMsg{
		{ID: "00f067aa0ba902b7", StartNS: 1765000000123456789, EndNS: 1765000000123999999},
		{ID: "", StartNS: -5, EndNS: 0},
		{ID: "a\"b<>&\u2028", StartNS: 1, EndNS: 2},
	} {
		want, err := json.Marshal(ResultMsg{Span: sp})
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendSpanResult(nil, sp); string(got) != string(want) {
			t.Errorf("AppendSpanResult(%+v) = %s, json.Marshal writes %s", sp, got, want)
		}
	}
	for _, in := range []string{
		"{}",
		string(sdk),
		`{"span":{"id":"x","start_ns":0,"end_ns":-0}}`,
		`{"span":{"id":"","start_ns":-1,"end_ns":9223372036854775807}}`,
		// Each goes to json.Unmarshal, which decodes it or refuses it.
		`{ }`,
		`{"span":{"id":"a\u0062","start_ns":1,"end_ns":2}}`,
		`{"span":{"id":"a b","start_ns":1,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":01,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":1.5,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":1e3,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":9223372036854775808,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":-,"end_ns":2}}`,
		`{"span":{"id":"ab","start_ns":1,"end_ns":2}} `,
		`{"span":{"id":"ab","start_ns":1,"end_ns":2},"state":{"value":{"n":1}}}`,
		`{"span":{"id":"ab","start_ns":1,"end_ns":2,"attributes":{"k":"v"}}}`,
		`{"span":{"id":"ab","end_ns":2,"start_ns":1}}`,
		`{"span":{"id":"ab","start_ns":1,"end_ns":2}`,
		`{"error":{"type":"Exception","message":"boom"}}`,
		`{"state":{"value":{"n":1}}}`,
		``,
	} {
		checkDecode(t, []byte(in))
	}
}

// FuzzDecodeResult: whatever the payload, DecodeResult and json.Unmarshal
// agree on whether it decodes and on what it decodes to.
func FuzzDecodeResult(f *testing.F) {
	for _, s := range []string{"{}", `{"span":{"id":"00f067aa0ba902b7","start_ns":1,"end_ns":2}}`, `{"error":{"type":"Timeout","message":"m"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkDecode(t, in) })
}

func checkDecode(t *testing.T, in []byte) {
	t.Helper()
	var got, want ResultMsg
	gotErr := DecodeResult(in, &got)
	wantErr := json.Unmarshal(in, &want)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: DecodeResult's error %v, json.Unmarshal's %v", in, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: DecodeResult gives %+v (span %+v), json.Unmarshal %+v (span %+v)", in, got, got.Span, want, want.Span)
	}
}

func BenchmarkDecodeResult(b *testing.B) {
	in := []byte(`{"span":{"id":"00f067aa0ba902b7","start_ns":1765000000123456789,"end_ns":1765000000123999999}}`)
	b.Run("span", func(b *testing.B) {
		for b.Loop() {
			var r ResultMsg
			_ = DecodeResult(in, &r)
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var r ResultMsg
			_ = json.Unmarshal(in, &r)
		}
	})
}
