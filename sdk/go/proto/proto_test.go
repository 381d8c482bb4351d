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

// writes records each write made to it.
type writes struct{ w [][]byte }

func (c *writes) Write(p []byte) (int, error) {
	c.w = append(c.w, append([]byte(nil), p...))
	return len(p), nil
}

// Queued frames wait for Flush, or go out with the next Write, before it
// and in one write; AppendFrame encodes frames as Write does.
func TestQueueAndFlush(t *testing.T) {
	out := &writes{}
	w := proto.NewWriter(out)
	if err := w.Queue(proto.Data, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := w.QueueJSON(proto.Result, 1, proto.ResultMsg{}); err != nil {
		t.Fatal(err)
	}
	if len(out.w) != 0 || !w.Queued() {
		t.Fatalf("queued frames were written: %d writes", len(out.w))
	}
	if err := w.Write(proto.Call, 2, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if len(out.w) != 1 || w.Queued() {
		t.Fatalf("%d writes, want the queued frames and the new one in 1", len(out.w))
	}
	var want []byte
	want, _ = proto.AppendFrame(want, proto.Data, 1, []byte("a"))
	want, _ = proto.AppendFrame(want, proto.Result, 1, []byte("{}"))
	want, _ = proto.AppendFrame(want, proto.Call, 2, []byte("{}"))
	if !bytes.Equal(out.w[0], want) {
		t.Errorf("written % x, want % x", out.w[0], want)
	}
	if err := w.Flush(); err != nil || len(out.w) != 1 {
		t.Errorf("Flush with nothing queued: %v, %d writes", err, len(out.w))
	}
	_ = w.Queue(proto.Data, 3, []byte("b"))
	if err := w.Flush(); err != nil || len(out.w) != 2 {
		t.Errorf("Flush: %v, %d writes", err, len(out.w))
	}
	// A chunk's worth queued is written without waiting for Flush.
	_ = w.Queue(proto.Data, 4, make([]byte, proto.ChunkSize))
	if len(out.w) != 3 || w.Queued() {
		t.Errorf("a full chunk stayed queued: %d writes", len(out.w))
	}
}

// A BATCH and its RESULTS decode to what was encoded, in place; cut or
// padded payloads and results beyond the batch are errors.
func TestBatchCodec(t *testing.T) {
	b := proto.AppendBatchHead(nil, 1234, 2)
	b = proto.AppendEventHead(b, 1)
	b = proto.AppendPair(b, "ce_id", []byte("x"))
	b = proto.AppendInput(b, []byte("first"))
	b = proto.AppendEventHead(b, 0)
	b = proto.AppendInput(b, nil)
	deadline, evs, err := proto.ReadBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if deadline != 1234 || len(evs) != 2 || len(evs[0].Meta) != 1 || string(evs[0].Meta[0].Key) != "ce_id" ||
		string(evs[0].Meta[0].Value) != "x" || string(evs[0].Input) != "first" || len(evs[1].Meta) != 0 || len(evs[1].Input) != 0 {
		t.Errorf("decoded %d %+v", deadline, evs)
	}
	if cap(evs[0].Input) != len(evs[0].Input) {
		t.Error("an input's capacity reaches into the next event: appending to it would overwrite it")
	}
	for name, bad := range map[string][]byte{"cut": b[:len(b)-1], "padded": append(append([]byte(nil), b...), 0), "empty": nil} {
		if _, _, err := proto.ReadBatch(bad); err == nil {
			t.Errorf("%s BATCH decoded", name)
		}
	}

	r := make([]byte, proto.ResultsHeadSize)
	proto.PutResultsHead(r, 1, 2)
	r = proto.AppendResultOK(r, []byte("out"))
	r = proto.AppendResultError(r, &proto.Error{Type: proto.Exception, Message: "boom"})
	res := make([]proto.BatchResult, 3)
	first, n, err := proto.ReadResults(r, res)
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 || n != 2 || string(res[1].Output) != "out" || res[1].Err != nil || res[2].Err == nil || *res[2].Err != (proto.Error{Type: proto.Exception, Message: "boom"}) {
		t.Errorf("results %d+%d %+v", first, n, res)
	}
	if _, _, err := proto.ReadResults(r, res[:2]); err == nil {
		t.Error("results beyond the batch decoded")
	}
	if _, _, err := proto.ReadResults(r[:len(r)-1], res); err == nil {
		t.Error("cut RESULTS decoded")
	}
}
