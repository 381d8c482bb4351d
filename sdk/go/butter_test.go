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
		case <-time.After(30 * time.Second):
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
	case <-time.After(30 * time.Second):
		p.t.Fatal("no frame from the worker within 30s")
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

// batchFrame encodes a BATCH payload of inputs, each with one meta pair.
func batchFrame(deadline int64, inputs ...string) []byte {
	b := proto.AppendBatchHead(nil, deadline, len(inputs))
	for i, in := range inputs {
		b = proto.AppendEventHead(b, 2)
		b = proto.AppendPair(b, "ce_id", fmt.Appendf(nil, "id-%d", i))
		b = proto.AppendPair(b, "param.n", fmt.Appendf(nil, "%d", i))
		b = proto.AppendInput(b, []byte(in))
	}
	return b
}

// With a pool of protocol 2, HELLO says 2; a BATCH's events run one at a
// time, in order, each with its metadata and params; their results come
// back in order, together; the first failure ends the batch, and the
// events after it do not run, while another batch runs on beside it.
func TestBatch(t *testing.T) {
	t.Setenv("BUTTER_CONCURRENCY", "8")
	t.Setenv("BUTTER_PROTOCOL", "2")
	var mu sync.Mutex
	var ran []string
	running := 0 // events of batch a running
	p := serveHello(t, func(ctx context.Context, in []byte) ([]byte, error) {
		c := butter.FromContext(ctx)
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
			return nil, errors.New("ran alongside another event of its batch")
		}
		if string(in) == "a3" || string(in) == "b1" {
			return nil, butter.ErrPreconditionFailed
		}
		return fmt.Appendf(nil, "%s %s %s", strings.ToUpper(string(in)), c.Meta["ce_id"], c.Params["n"]), nil
	}, func(h proto.HelloMsg) {
		if h.Protocol != 2 {
			t.Errorf("HELLO %+v, want protocol 2", h)
		}
	})
	deadline := time.Now().Add(time.Minute).UnixMilli()
	if err := p.w.Write(proto.Batch, 1, batchFrame(deadline, "a0", "a1", "a2", "a3", "a4", "a5")); err != nil {
		t.Fatal(err)
	}
	if err := p.w.Write(proto.Batch, 2, batchFrame(deadline, "b0", "b1", "b2")); err != nil {
		t.Fatal(err)
	}
	// The two batches' RESULTS interleave; each ends with its count of
	// results or its first failure.
	res := map[uint32][]proto.BatchResult{1: make([]proto.BatchResult, 6), 2: make([]proto.BatchResult, 3)}
	got := map[uint32]int{}
	ended := func(id uint32) bool {
		return got[id] == len(res[id]) || (got[id] > 0 && res[id][got[id]-1].Err != nil)
	}
	for !ended(1) || !ended(2) {
		f := p.next()
		if f.Type != proto.Results || res[f.ID] == nil {
			t.Fatalf("unexpected %s frame for id %d", f.Type, f.ID)
		}
		first, n, err := proto.ReadResults(f.Payload, res[f.ID])
		if err != nil {
			t.Fatal(err)
		}
		if first != got[f.ID] {
			t.Fatalf("batch %d: RESULTS from %d, want %d", f.ID, first, got[f.ID])
		}
		got[f.ID] += n
	}
	resA, resB := res[1][:got[1]], res[2][:got[2]]
	if len(resA) != 4 {
		t.Fatalf("batch a: %d results, want 4 (ending with a3's failure)", len(resA))
	}
	for i := range 3 {
		if want := fmt.Sprintf("A%d id-%d %d", i, i, i); string(resA[i].Output) != want || resA[i].Err != nil {
			t.Errorf("a%d: %q %+v, want %q", i, resA[i].Output, resA[i].Err, want)
		}
	}
	if e := resA[3].Err; e == nil || e.Type != proto.PreconditionFailed {
		t.Errorf("a3: %+v, want PreconditionFailed", e)
	}
	if len(resB) != 2 || resB[0].Err != nil || resB[1].Err == nil {
		t.Errorf("batch b: %+v, want b0 then b1's failure", resB)
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

// A CANCEL ends a batch: the event running sees its context end, and the
// next one is answered Skipped without running; an event that runs long
// does not hold back the results of those before it; a CALL carries the
// event's index.
func TestBatchCancel(t *testing.T) {
	t.Setenv("BUTTER_PROTOCOL", "2")
	started := make(chan struct{})
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		if string(in) == "slow" {
			if err := butter.FromContext(ctx).Log("info", "slow"); err != nil {
				return nil, err
			}
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return in, nil
	})
	if err := p.w.Write(proto.Batch, 7, batchFrame(time.Now().Add(time.Minute).UnixMilli(), "x", "y", "slow", "z")); err != nil {
		t.Fatal(err)
	}
	// x and y's results come while slow runs, before any CANCEL.
	// The CALL of slow's log and the RESULTS of x and y may come in either
	// order: read until both have come.
	res := make([]proto.BatchResult, 4)
	got, called := 0, false
	for got < 2 || !called {
		f := p.next()
		switch f.Type {
		case proto.Call:
			var c proto.CallMsg
			if err := json.Unmarshal(f.Payload, &c); err != nil {
				t.Fatal(err)
			}
			if f.ID != 7 || c.Index != 2 {
				t.Errorf("CALL id %d index %d, want 7 and 2", f.ID, c.Index)
			}
			_ = p.w.WriteJSON(proto.Reply, f.ID, proto.ReplyMsg{Seq: c.Seq, OK: true})
			called = true
		case proto.Results:
			_, n, err := proto.ReadResults(f.Payload, res)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("slow did not start after its log was answered")
	}
	if err := p.w.Write(proto.Cancel, 7, nil); err != nil {
		t.Fatal(err)
	}
	f := p.next()
	if f.Type != proto.Results {
		t.Fatalf("after CANCEL: %s, want RESULTS", f.Type)
	}
	first, n, err := proto.ReadResults(f.Payload, res)
	if err != nil {
		t.Fatal(err)
	}
	if first != 2 || n != 1 || res[2].Err == nil || res[2].Err.Type != proto.Exception {
		t.Errorf("after CANCEL: results %d+%d %+v, want slow's failure alone", first, n, res[2].Err)
	}
	if string(res[0].Output) != "x" || string(res[1].Output) != "y" {
		t.Errorf("outputs %q %q", res[0].Output, res[1].Output)
	}
}

// A worker started by a pool of protocol 1 says 1, and refuses BATCH.
func TestBatchNeedsProtocol2(t *testing.T) {
	t.Setenv("BUTTER_PROTOCOL", "1")
	p := serveHello(t, func(ctx context.Context, in []byte) ([]byte, error) { return in, nil }, func(h proto.HelloMsg) {
		if h.Protocol != 1 {
			t.Errorf("HELLO %+v, want protocol 1", h)
		}
	})
	_ = p.w.Write(proto.Batch, 1, batchFrame(0, "a"))
	select {
	case err := <-p.done:
		if err == nil || !strings.Contains(err.Error(), "BATCH") {
			t.Errorf("ServeConn: %v, want an error naming BATCH", err)
		}
		p.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the worker took a BATCH in protocol 1")
	}
}

// An INVOKE without a deadline (0, or none) runs without one: its context
// has no deadline and is not already expired.
func TestNoDeadline(t *testing.T) {
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if d, ok := ctx.Deadline(); ok {
			return nil, fmt.Errorf("deadline %v", d)
		}
		return in, nil
	})
	if err := p.w.WriteJSON(proto.Invoke, 1, proto.InvokeMsg{Function: "f"}); err != nil {
		t.Fatal(err)
	}
	_ = p.w.Write(proto.Data, 1, []byte("x"))
	_ = p.w.Write(proto.End, 1, nil)
	var out []byte
	for {
		f := p.next()
		if f.Type == proto.Data {
			out = append(out, f.Payload...)
			continue
		}
		var res proto.ResultMsg
		if f.Type != proto.Result || json.Unmarshal(f.Payload, &res) != nil {
			t.Fatalf("frame %s %q", f.Type, f.Payload)
		}
		if res.Error != nil || string(out) != "x" {
			t.Fatalf("output %q, error %+v", out, res.Error)
		}
		return
	}
}

// A handler's panic fails the call as an Exception whose message is the
// panic's value, and whose detail, for the pool's log only, is the stack
// of the goroutine that panicked. An error the handler returns has no
// detail.
func TestPanicDetail(t *testing.T) {
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		if string(in) == "error" {
			return nil, fmt.Errorf("refused %s", in)
		}
		panic("boom")
	})
	_, res := p.invoke(1, proto.InvokeMsg{Function: "f"}, "panic")
	if e := res.Error; e == nil || e.Type != proto.Exception || e.Message != "panic: boom" ||
		!strings.Contains(e.Detail, "goroutine ") || !strings.Contains(e.Detail, "TestPanicDetail") {
		t.Fatalf("a panic: %+v; want an Exception with the panic's value and its stack as detail", e)
	}
	_, res = p.invoke(2, proto.InvokeMsg{Function: "f"}, "error")
	if e := res.Error; e == nil || e.Message != "refused error" || e.Detail != "" {
		t.Fatalf("an error: %+v; want its message and no detail", e)
	}
}

// TestContextOfCall: a handler's context is its call's (FromContext
// finds the Call, through contexts derived from it too) and carries the
// invocation's deadline.
func TestContextOfCall(t *testing.T) {
	type key struct{}
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		c := butter.FromContext(ctx)
		derived, cancel := context.WithTimeout(context.WithValue(ctx, key{}, "v"), time.Hour)
		defer cancel()
		dl, ok := ctx.Deadline()
		switch {
		case c == nil:
			return nil, errors.New("no call in the handler's context")
		case butter.FromContext(derived) != c:
			return nil, errors.New("a derived context finds another call")
		case derived.Value(key{}) != "v":
			return nil, errors.New("a derived context lost its own value")
		case !ok || time.Until(dl) > time.Minute:
			return nil, fmt.Errorf("deadline %v (%v), want the invocation's, within a minute", dl, ok)
		}
		return []byte(c.Function + " " + c.Meta["ce_id"]), nil
	})
	out, res := p.invoke(1, proto.InvokeMsg{Function: "f", Meta: map[string]string{"ce_id": "e1"}}, "x")
	if res.Error != nil || out != "f e1" {
		t.Fatalf("output %q, error %+v", out, res.Error)
	}
}
