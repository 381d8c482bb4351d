package butter_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// frames1 runs one invocation and returns the types of the frames the
// worker answered with, in order, and its HEAD's payload if it sent one.
func (p *pool) frames1(id uint32, input string) ([]proto.Type, *proto.HeadMsg) {
	p.t.Helper()
	msg := proto.InvokeMsg{Function: "f", Deadline: time.Now().Add(time.Minute).UnixMilli(),
		Meta: map[string]string{"ce_httpmethod": "POST", "ce_httppath": "/items"}}
	if err := p.w.WriteJSON(proto.Invoke, id, msg); err != nil {
		p.t.Fatal(err)
	}
	_ = p.w.Write(proto.Data, id, []byte(input))
	_ = p.w.Write(proto.End, id, nil)
	var types []proto.Type
	var head *proto.HeadMsg
	for {
		f := p.next()
		types = append(types, f.Type)
		if f.Type == proto.Head {
			head = &proto.HeadMsg{}
			if err := json.Unmarshal(f.Payload, head); err != nil {
				p.t.Fatalf("HEAD %q: %v", f.Payload, err)
			}
		}
		if f.Type == proto.Result {
			return types, head
		}
	}
}

func created(ctx context.Context, in []byte) ([]byte, error) {
	c := butter.FromContext(ctx)
	c.SetStatus(201)
	c.Header().Set("Location", "/items/1")
	c.Header().Add("X-Multi", "a")
	c.Header().Add("X-Multi", "b")
	if string(in) == "fail" {
		return nil, errors.New("failed after setting the head")
	}
	return []byte("made"), nil
}

// TestHead: with a pool of protocol 3, a handler's status and headers go
// in one HEAD before its output; a handler that fails sends none; with a
// pool of protocol 2 (which would close a worker that sent one), none.
func TestHead(t *testing.T) {
	t.Setenv("BUTTER_PROTOCOL", "3")
	p := serve(t, created)
	types, head := p.frames1(1, "x")
	if !reflect.DeepEqual(types, []proto.Type{proto.Head, proto.Data, proto.Result}) {
		t.Errorf("frames %v, want HEAD DATA RESULT", types)
	}
	want := &proto.HeadMsg{Status: 201, Headers: map[string][]string{"Location": {"/items/1"}, "X-Multi": {"a", "b"}}}
	if !reflect.DeepEqual(head, want) {
		t.Errorf("HEAD %+v, want %+v", head, want)
	}
	if types, _ := p.frames1(2, "fail"); !reflect.DeepEqual(types, []proto.Type{proto.Result}) {
		t.Errorf("a failed call's frames %v, want RESULT only", types)
	}
}

func TestNoHeadBeforeProtocol3(t *testing.T) {
	t.Setenv("BUTTER_PROTOCOL", "2")
	p := serve(t, created)
	if types, _ := p.frames1(1, "x"); !reflect.DeepEqual(types, []proto.Type{proto.Data, proto.Result}) {
		t.Errorf("frames %v, want DATA RESULT", types)
	}
}
