package butter_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// result1 runs one invocation with meta and returns its RESULT.
func (p *pool) result1(id uint32, meta map[string]string) proto.ResultMsg {
	p.t.Helper()
	msg := proto.InvokeMsg{Function: "f", Deadline: time.Now().Add(time.Minute).UnixMilli(), Meta: meta}
	if err := p.w.WriteJSON(proto.Invoke, id, msg); err != nil {
		p.t.Fatal(err)
	}
	_ = p.w.Write(proto.End, id, nil)
	for {
		f := p.next()
		if f.Type != proto.Result {
			continue
		}
		var res proto.ResultMsg
		if err := json.Unmarshal(f.Payload, &res); err != nil {
			p.t.Fatalf("RESULT %q: %v", f.Payload, err)
		}
		return res
	}
}

const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// TestSpan: when the pool asks for the handler's span (butter.span=1),
// the RESULT carries it with what the handler added, and the
// traceparent the handler passes on names the span's id in the call's
// trace; when it does not, nothing is recorded and the handler passes on
// the call's own traceparent.
func TestSpan(t *testing.T) {
	seen := make(chan string, 2)
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		s := butter.FromContext(ctx).Span()
		s.SetAttribute("device", "d1").AddEvent("alert", map[string]any{"level": 3})
		seen <- s.Traceparent()
		return []byte("ok"), nil
	})
	res := p.result1(1, map[string]string{"ce_traceparent": parent, proto.MetaSpan: "1"})
	tp := <-seen
	if res.Span == nil {
		t.Fatal("RESULT has no span although the pool asked for one")
	}
	sp := res.Span
	if len(sp.ID) != 16 || tp != "00-0af7651916cd43dd8448eb211c80319c-"+sp.ID+"-01" {
		t.Errorf("span id %q, handler's traceparent %q: want the call's trace with the span's id", sp.ID, tp)
	}
	if sp.StartNS <= 0 || sp.EndNS < sp.StartNS {
		t.Errorf("span times %d..%d", sp.StartNS, sp.EndNS)
	}
	if sp.Attributes["device"] != "d1" {
		t.Errorf("attributes %v, want device=d1", sp.Attributes)
	}
	if len(sp.Events) != 1 || sp.Events[0].Name != "alert" || sp.Events[0].Attributes["level"] != float64(3) {
		t.Errorf("events %+v, want one alert with level 3", sp.Events)
	}

	res = p.result1(2, map[string]string{"ce_traceparent": parent})
	if res.Span != nil {
		t.Errorf("RESULT has a span %+v although the pool did not ask", res.Span)
	}
	if tp := <-seen; tp != parent {
		t.Errorf("untraced handler's traceparent %q, want the call's %q", tp, parent)
	}
}
