package proto_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/butterfn/butter/sdk/go/proto"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := proto.NewWriter(&buf)
	big := bytes.Repeat([]byte{7}, proto.ChunkSize)
	if err := w.WriteJSON(proto.Invoke, 9, proto.InvokeMsg{Function: "f", Deadline: 42}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(proto.Data, 9, big); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(proto.End, 9, nil); err != nil {
		t.Fatal(err)
	}
	r := proto.NewReader(&buf)
	for i, want := range []proto.Frame{{Type: proto.Invoke, ID: 9}, {Type: proto.Data, ID: 9, Payload: big}, {Type: proto.End, ID: 9, Payload: []byte{}}} {
		f, err := r.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Type != want.Type || f.ID != want.ID || (want.Payload != nil && !bytes.Equal(f.Payload, want.Payload)) {
			t.Errorf("frame %d = %s id %d len %d", i, f.Type, f.ID, len(f.Payload))
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

func TestBadFrames(t *testing.T) {
	frame := func(length uint32, typ byte, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		return append(append(b, typ, 0, 0, 0, 1), rest...)
	}
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"short length":   {frame(3, 3), nil},
		"too large":      {frame(proto.MaxFrame+1, 3), proto.ErrFrameTooLarge},
		"unknown type":   {frame(5, 42), nil},
		"truncated":      {frame(10, 3, 1, 2), io.ErrUnexpectedEOF},
		"truncated head": {[]byte{0, 0, 0, 9, 3}, io.ErrUnexpectedEOF},
	} {
		_, err := proto.NewReader(bytes.NewReader(c.in)).Read()
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	if err := proto.NewWriter(io.Discard).Write(proto.Data, 1, make([]byte, proto.MaxFrame)); !errors.Is(err, proto.ErrFrameTooLarge) {
		t.Errorf("writing an oversized frame: %v", err)
	}
}
