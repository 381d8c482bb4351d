package butter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// pool is the pool's side of a worker served by ServeConn over pipes.
type pool struct {
	t      *testing.T
	w      *proto.Writer
	in     io.WriteCloser
	frames chan proto.Frame
	done   chan error
}

func serve(t *testing.T, h butter.Handler) *pool {
	t.Helper()
	return serveHello(t, h, nil)
}

// serveHello is serve, passing the worker's HELLO to hello when not nil.
func serveHello(t *testing.T, h butter.Handler, hello func(proto.HelloMsg)) *pool {
	t.Helper()
	toR, toW := io.Pipe()
	fromR, fromW := io.Pipe()
	p := &pool{t: t, w: proto.NewWriter(toW), in: toW, frames: make(chan proto.Frame, 64), done: make(chan error, 1)}
	go func() {
		err := butter.ServeConn(toR, fromW, h)
		fromW.Close()
		p.done <- err
	}()
	go func() {
		r := proto.NewReader(fromR)
		for {
			f, err := r.Read()
			if err != nil {
				close(p.frames)
				return
			}
			p.frames <- f
		}
	}()
	t.Cleanup(func() {
		toW.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("the worker did not stop after its input closed")
		}
	})
	f := p.next()
	if f.Type != proto.Hello {
		t.Fatalf("first frame %s, want HELLO", f.Type)
	}
	if hello != nil {
		var h proto.HelloMsg
		if err := json.Unmarshal(f.Payload, &h); err != nil {
			t.Fatal(err)
		}
		hello(h)
	}
	return p
}

func (p *pool) next() proto.Frame {
	p.t.Helper()
	select {
	case f, ok := <-p.frames:
		if !ok {
			p.t.Fatal("the worker's stream ended")
		}
		return f
	case <-time.After(5 * time.Second):
		p.t.Fatal("no frame from the worker within 5s")
	}
	return proto.Frame{}
}

// invoke runs one invocation and returns its output and RESULT.
func (p *pool) invoke(id uint32, msg proto.InvokeMsg, input string) (string, proto.ResultMsg) {
	p.t.Helper()
	msg.Deadline = time.Now().Add(time.Minute).UnixMilli()
	if err := p.w.WriteJSON(proto.Invoke, id, msg); err != nil {
		p.t.Fatal(err)
	}
	if input != "" {
		_ = p.w.Write(proto.Data, id, []byte(input))
	}
	_ = p.w.Write(proto.End, id, nil)
	var out []byte
	for {
		f := p.next()
		if f.ID != id {
			p.t.Fatalf("frame %s for invocation %d, want %d", f.Type, f.ID, id)
		}
		switch f.Type {
		case proto.Data:
			out = append(out, f.Payload...)
		case proto.Result:
			var res proto.ResultMsg
			if err := json.Unmarshal(f.Payload, &res); err != nil {
				p.t.Fatal(err)
			}
			return string(out), res
		default:
			p.t.Fatalf("unexpected %s frame", f.Type)
		}
	}
}

type counter struct {
	N int `json:"n"`
}

// count keeps a counter per key and answers with the params and the count.
func count(ctx context.Context, in []byte) ([]byte, error) {
	c := butter.FromContext(ctx)
	var st counter
	if _, err := c.State().Get(&st); err != nil {
		return nil, err
	}
	switch string(in) {
	case "delete":
		return []byte("deleted"), c.State().Delete()
	case "fail":
		_ = c.State().Set(counter{N: 1000})
		return nil, errors.New("failed after a set")
	}
	st.N++
	if err := c.State().Set(st); err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%s %s %d", c.Params["device"], c.State().Key(), st.N), nil
}

func TestParamsAndState(t *testing.T) {
	p := serve(t, count)
	meta := map[string]string{"param.device": "d1", "content-type": "application/json"}

	out, res := p.invoke(1, proto.InvokeMsg{Function: "f", Meta: meta, State: &proto.StateMsg{Key: "d1", Value: json.RawMessage(`{"n":41}`)}}, "x")
	if out != "d1 d1 42" || res.Error != nil || res.State == nil || string(res.State.Value) != `{"n":42}` || res.State.Deleted {
		t.Fatalf("output %q, result %+v %+v", out, res.Error, res.State)
	}
	// No state yet: Get reports none and leaves the value alone.
	out, res = p.invoke(2, proto.InvokeMsg{Function: "f", Meta: meta, State: &proto.StateMsg{Key: "d2"}}, "x")
	if out != "d1 d2 1" || res.State == nil || string(res.State.Value) != `{"n":1}` {
		t.Fatalf("output %q, state %+v", out, res.State)
	}
	// Delete is reported as deleted, without a value.
	_, res = p.invoke(3, proto.InvokeMsg{Function: "f", State: &proto.StateMsg{Key: "d1", Value: json.RawMessage(`{"n":5}`)}}, "delete")
	if res.Error != nil || res.State == nil || !res.State.Deleted || res.State.Value != nil {
		t.Fatalf("delete: %+v %+v", res.Error, res.State)
	}
	// A failed call reports no state change.
	_, res = p.invoke(4, proto.InvokeMsg{Function: "f", State: &proto.StateMsg{Key: "d1"}}, "fail")
	if res.Error == nil || res.State != nil {
		t.Fatalf("fail: %+v %+v", res.Error, res.State)
	}
	// No key: Set fails, naming the field that was looked for.
	_, res = p.invoke(5, proto.InvokeMsg{Function: "f", State: &proto.StateMsg{Field: "device"}}, "x")
	if res.Error == nil || res.Error.Type != proto.Exception || res.State != nil ||
		res.Error.Message != `butter: state: this call has no state key (the event has no "device" field, no record key and no Butter-State-Key header)` {
		t.Fatalf("no key: %+v %+v", res.Error, res.State)
	}
	// No state block: Set fails too.
	_, res = p.invoke(6, proto.InvokeMsg{Function: "f"}, "x")
	if res.Error == nil || res.Error.Message != "butter: state: function f has no state block" {
		t.Fatalf("no state block: %+v", res.Error)
	}
}

// A handler that does not touch the state reports no change.
func TestStateUntouched(t *testing.T) {
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		return butter.FromContext(ctx).State().Raw(), nil
	})
	out, res := p.invoke(1, proto.InvokeMsg{Function: "f", State: &proto.StateMsg{Key: "k", Value: json.RawMessage(`[1,2]`)}}, "")
	if out != "[1,2]" || res.Error != nil || res.State != nil {
		t.Fatalf("output %q, result %+v %+v", out, res.Error, res.State)
	}
}

// HELLO advertises ordered batches; the invocations of an ordered batch,
// sent in one write with more concurrency allowed, run one at a time in
// order, their results come back in order, and once one fails the rest of
// its batch are skipped, not run, while another batch runs on.
func TestOrderedBatch(t *testing.T) {
	t.Setenv("BUTTER_CONCURRENCY", "8")
	var mu sync.Mutex
	var ran []string
	running := 0 // invocations of batch a running
	p := serveHello(t, func(ctx context.Context, in []byte) ([]byte, error) {
		a := strings.HasPrefix(string(in), "a")
		mu.Lock()
		if a {
			running++
		}
		overlap := running > 1
		ran = append(ran, string(in))
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		if a {
			running--
		}
		mu.Unlock()
		if overlap {
			return nil, errors.New("ran alongside another invocation")
		}
		if string(in) == "a3" || string(in) == "b1" {
			return nil, butter.ErrPreconditionFailed
		}
		return []byte(strings.ToUpper(string(in))), nil
	}, func(h proto.HelloMsg) {
		if !h.Ordered {
			t.Errorf("HELLO %+v does not advertise ordered batches", h)
		}
	})
	deadline := time.Now().Add(time.Minute).UnixMilli()
	// Batch a: ids 1-6, a3 fails. Batch b (ids 10-12), sent unordered
	// after a: b1 fails, b2 still runs.
	var buf []byte
	for i := range 6 {
		meta, _ := json.Marshal(proto.InvokeMsg{Function: "f", Deadline: deadline, Ordered: true, Batch: 1, Index: i, Count: 6})
		buf, _ = proto.AppendFrame(buf, proto.Invoke, uint32(1+i), meta)
		buf, _ = proto.AppendFrame(buf, proto.Data, uint32(1+i), fmt.Appendf(nil, "a%d", i))
		buf, _ = proto.AppendFrame(buf, proto.End, uint32(1+i), nil)
	}
	if err := p.w.WriteFrames(buf); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := uint32(10 + i)
		_ = p.w.WriteJSON(proto.Invoke, id, proto.InvokeMsg{Function: "f", Deadline: deadline})
		_ = p.w.Write(proto.Data, id, fmt.Appendf(nil, "b%d", i))
		_ = p.w.Write(proto.End, id, nil)
	}
	outs := map[uint32]string{}
	var order []uint32
	results := map[uint32]proto.ResultMsg{}
	for len(results) < 9 {
		f := p.next()
		switch f.Type {
		case proto.Data:
			outs[f.ID] += string(f.Payload)
		case proto.Result:
			var res proto.ResultMsg
			if err := json.Unmarshal(f.Payload, &res); err != nil {
				t.Fatal(err)
			}
			results[f.ID] = res
			if f.ID < 10 {
				order = append(order, f.ID)
			}
		}
	}
	if fmt.Sprint(order) != "[1 2 3 4 5 6]" {
		t.Errorf("batch results in order %v", order)
	}
	for id := uint32(1); id <= 3; id++ {
		if want := fmt.Sprintf("A%d", id-1); outs[id] != want || results[id].Error != nil {
			t.Errorf("invocation %d: %q %+v, want %s", id, outs[id], results[id].Error, want)
		}
	}
	if e := results[4].Error; e == nil || e.Type != proto.PreconditionFailed {
		t.Errorf("a3: %+v, want PreconditionFailed", e)
	}
	for id := uint32(5); id <= 6; id++ {
		if e := results[id].Error; e == nil || e.Type != proto.Skipped || outs[id] != "" {
			t.Errorf("invocation %d after the failure: %q %+v, want Skipped", id, outs[id], e)
		}
	}
	if e := results[12].Error; e != nil || outs[12] != "B2" {
		t.Errorf("unordered b2 after b1 failed: %q %+v", outs[12], e)
	}
	mu.Lock()
	defer mu.Unlock()
	var as []string
	for _, r := range ran {
		if strings.HasPrefix(r, "a") {
			as = append(as, r)
		}
	}
	if fmt.Sprint(as) != "[a0 a1 a2 a3]" {
		t.Errorf("batch a ran %v, want a0 to a3 in order", as)
	}
}
