package gateway

import (
	"strings"
	"testing"
)

// TestResponseCodec: which serialization an Accept header chooses.
func TestResponseCodec(t *testing.T) {
	for _, c := range []struct {
		accept string
		want   *codec
		err    bool
	}{
		{"", nil, false},
		{"*/*", nil, false},
		{"*", nil, false},
		{"application/cbor", cborCodec, false},
		{"application/x-msgpack", msgpCodec, false},
		{"application/cbor, application/json", cborCodec, false},             // order, at equal quality and specificity
		{"application/json, application/cbor", nil, false},                   //
		{"application/cbor;q=0.9, application/msgpack", msgpCodec, false},    // quality
		{"*/*;q=0.9, application/cbor;q=0.5", nil, false},                    // JSON takes */*'s 0.9
		{"application/*, application/json;q=0", cborCodec, false},            // JSON named out
		{"text/html, application/xhtml+xml, */*;q=0.8", nil, false},          // a browser's
		{"application/msgpack;q=0.5, application/*;q=0.5", msgpCodec, false}, // named over a wildcard
		{"text/html", nil, true},                                             // none
		{"application/json;q=0, application/cbor;q=0, application/*;q=0", nil, true},
	} {
		var accept []string
		if c.accept != "" {
			accept = []string{c.accept}
		}
		got, err := responseCodec(accept)
		if got != c.want || (err != nil) != c.err {
			name := func(x *codec) string {
				if x == nil {
					return "JSON"
				}
				return x.name
			}
			t.Errorf("Accept %q: %s, %v; want %s, error %v", c.accept, name(got), err, name(c.want), c.err)
		}
	}
}

// TestConversions: the data model's edges, one way and the other.
func TestConversions(t *testing.T) {
	// A CBOR byte string becomes base64 in JSON; NaN has no JSON form.
	b, _ := cborEnc.Marshal(map[string]any{"raw": []byte{1, 2, 3}})
	if j, e := toJSON(cborCodec, b); e != nil || string(j) != `{"raw":"AQID"}` {
		t.Errorf("bytes: %s %v", j, e)
	}
	nan := []byte{0xa1, 0x61, 'x', 0xf9, 0x7e, 0x00} // {"x": NaN}, NaN as a half float
	if _, e := toJSON(cborCodec, nan); e == nil || !strings.Contains(e.Message, "no JSON form") {
		t.Errorf("NaN: %v, want no JSON form", e)
	}
	// Integers beyond 64 bits: CBOR bignums, refused by MessagePack.
	huge := []byte(`{"n": 123456789012345678901234567890}`)
	if _, err := fromJSON(cborCodec, huge); err != nil {
		t.Errorf("a bignum to CBOR: %v", err)
	}
	if _, err := fromJSON(msgpCodec, huge); err == nil || !strings.Contains(err.Error(), "64 bits") {
		t.Errorf("a bignum to MessagePack: %v, want refused", err)
	}
	if _, err := fromJSON(cborCodec, []byte(`{"a": 1} {"b": 2}`)); err == nil {
		t.Error("two JSON values converted")
	}
}
