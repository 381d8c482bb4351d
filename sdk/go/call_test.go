package butter_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// TestCall: Call sends op "call" with the target, key, value and timeout,
// and returns the REPLY's value, or a *CallError carrying its error type
// (none for a refusal), which the handler's result reports as an
// Exception when returned as is.
func TestCall(t *testing.T) {
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		out, err := butter.FromContext(ctx).Call("scorer", "k1", in, 250*time.Millisecond)
		var ce *butter.CallError
		if errors.As(err, &ce) && string(in) == "catch" {
			return []byte(ce.Target + "|" + ce.Type + "|" + ce.Message), nil
		}
		return out, err
	})
	reply := func(id uint32, rep proto.ReplyMsg) proto.CallMsg {
		t.Helper()
		f := p.next()
		if f.Type != proto.Call || f.ID != id {
			t.Fatalf("%s for %d, want a CALL for %d", f.Type, f.ID, id)
		}
		var c proto.CallMsg
		if err := json.Unmarshal(f.Payload, &c); err != nil {
			t.Fatal(err)
		}
		rep.Seq = c.Seq
		if err := p.w.WriteJSON(proto.Reply, id, rep); err != nil {
			t.Fatal(err)
		}
		return c
	}
	msg := proto.InvokeMsg{Function: "fn", Deadline: time.Now().Add(time.Minute).UnixMilli()}
	call := func(id uint32, in string, rep proto.ReplyMsg) (proto.CallMsg, string, proto.ResultMsg) {
		t.Helper()
		if err := p.w.WriteJSON(proto.Invoke, id, msg); err != nil {
			t.Fatal(err)
		}
		_ = p.w.Write(proto.Data, id, []byte(in))
		_ = p.w.Write(proto.End, id, nil)
		c := reply(id, rep)
		var out []byte
		for {
			f := p.next()
			switch f.Type {
			case proto.Data:
				out = append(out, f.Payload...)
			case proto.Result:
				var res proto.ResultMsg
				if err := json.Unmarshal(f.Payload, &res); err != nil {
					t.Fatal(err)
				}
				return c, string(out), res
			default:
				t.Fatalf("unexpected %s", f.Type)
			}
		}
	}
	c, out, res := call(1, "in", proto.ReplyMsg{OK: true, Value: []byte("42")})
	if c.Op != "call" || c.Target != "scorer" || c.Key != "k1" || string(c.Value) != "in" || c.TimeoutMS != 250 {
		t.Errorf("CALL %+v", c)
	}
	if out != "42" || res.Error != nil {
		t.Errorf("reply: %q %+v, want 42", out, res.Error)
	}
	if _, out, _ = call(2, "catch", proto.ReplyMsg{ErrorType: proto.PreconditionFailed, Error: "not a number"}); out != "scorer|PreconditionFailed|not a number" {
		t.Errorf("caught: %q", out)
	}
	if _, out, _ = call(3, "catch", proto.ReplyMsg{Error: `unknown call target "scorer"`}); out != `scorer||unknown call target "scorer"` {
		t.Errorf("refused: %q", out)
	}
	_, _, res = call(4, "uncaught", proto.ReplyMsg{ErrorType: proto.PreconditionFailed, Error: "no"})
	if res.Error == nil || res.Error.Type != proto.Exception || res.Error.Message != "call scorer: PreconditionFailed: no" {
		t.Errorf("uncaught: %+v, want an Exception", res.Error)
	}
}
