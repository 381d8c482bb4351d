package butter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
	"github.com/butterfn/butter/sdk/go/proto"
)

// TestWorkerProcess is not a test: TestExitStatus runs this test binary
// as a worker process (Serve over fds 3 and 4) with this test alone.
func TestWorkerProcess(t *testing.T) {
	if os.Getenv("BUTTER_SDK_TEST_WORKER") == "" {
		t.Skip("the worker process of TestExitStatus")
	}
	butter.Serve(func(ctx context.Context, in []byte) ([]byte, error) { return in, nil })
}

// TestExitStatus: a real worker process exits 0 once the pool closes fd 3,
// and 2, saying why on stderr, when the pool breaks the protocol
// (docs/worker-protocol.md, "Exit status"), as the Node and Python
// workers do.
func TestExitStatus(t *testing.T) {
	frame := func(typ proto.Type, id uint32, payload string) []byte {
		b, err := proto.AppendFrame(nil, typ, id, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	invoke := string(frame(proto.Invoke, 7, `{"function":"fn"}`))
	for _, c := range []struct {
		name, send string
		status     int
		stderr     string
	}{
		{"fd 3 closed", "", 0, ""},
		{"a call, then fd 3 closed", invoke + string(frame(proto.Data, 7, "x")) + string(frame(proto.End, 7, "")), 0, ""},
		{"an INVOKE for an id in flight", invoke + invoke, 2, "INVOKE for invocation 7, which is in flight"},
		{"malformed JSON", string(frame(proto.Invoke, 7, `{"function":`)), 2, "worker protocol error"},
		{"an unknown frame type", string([]byte{0, 0, 0, 5, 42, 0, 0, 0, 1}), 2, "unknown frame type 42"},
		{"a frame cut by the end of the stream", invoke[:len(invoke)-3], 2, "unexpected EOF"},
		{"a bad frame length", string([]byte{0, 0, 0, 2, 1, 0}), 2, "below the header size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			toR, toW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			fromR, fromW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer fromR.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestWorkerProcess$")
			cmd.Env = append(os.Environ(), "BUTTER_SDK_TEST_WORKER=1", "BUTTER_PROTOCOL=2", "BUTTER_FUNCTION=fn")
			cmd.ExtraFiles = []*os.File{toR, fromW}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			toR.Close()
			fromW.Close()
			r := proto.NewReader(fromR)
			if f, err := r.Read(); err != nil || f.Type != proto.Hello {
				t.Fatalf("first frame %v (%v), want HELLO", f.Type, err)
			}
			// The worker's frames are read to their end, so that it never
			// blocks writing them.
			go func() {
				for {
					if _, err := r.Read(); err != nil {
						return
					}
				}
			}()
			if _, err := toW.WriteString(c.send); err != nil {
				t.Fatal(err)
			}
			toW.Close()
			err = cmd.Wait()
			status := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != c.status || !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("exit status %d, stderr %q: want %d and %q", status, stderr.String(), c.status, c.stderr)
			}
		})
	}
}

// TestSeqAcrossInvocations: the Go SDK numbers its context calls across
// the worker, not per invocation (docs/worker-protocol.md, "Context
// calls"): concurrent invocations' CALLs never share a seq, so a REPLY is
// matched by its seq alone, whatever order the replies come in.
func TestSeqAcrossInvocations(t *testing.T) {
	t.Setenv("BUTTER_CONCURRENCY", "2")
	p := serve(t, func(ctx context.Context, in []byte) ([]byte, error) {
		if err := butter.FromContext(ctx).Log("info", string(in)); err != nil {
			return nil, err
		}
		return in, nil
	})
	for id := uint32(1); id <= 2; id++ {
		_ = p.w.WriteJSON(proto.Invoke, id, proto.InvokeMsg{Function: "fn", Deadline: time.Now().Add(time.Minute).UnixMilli()})
		_ = p.w.Write(proto.Data, id, []byte{byte('a' + id)})
		_ = p.w.Write(proto.End, id, nil)
	}
	seqs := map[uint32]uint64{}
	for len(seqs) < 2 {
		f := p.next()
		var c proto.CallMsg
		if f.Type != proto.Call || json.Unmarshal(f.Payload, &c) != nil {
			t.Fatalf("frame %s %s, want a CALL", f.Type, f.Payload)
		}
		seqs[f.ID] = c.Seq
	}
	if seqs[1] == seqs[2] || seqs[1] == 0 || seqs[2] == 0 {
		t.Fatalf("seqs %v: want two different ones, from 1", seqs)
	}
	// Replies in the reverse order of the calls.
	for id := uint32(2); id >= 1; id-- {
		_ = p.w.WriteJSON(proto.Reply, id, proto.ReplyMsg{Seq: seqs[id], OK: true})
	}
	got := map[uint32]string{}
	for results := 0; results < 2; {
		f := p.next()
		switch f.Type {
		case proto.Data:
			got[f.ID] += string(f.Payload)
		case proto.Result:
			if string(f.Payload) != "{}" {
				t.Errorf("invocation %d: RESULT %s", f.ID, f.Payload)
			}
			got[f.ID] += "."
			results++
		}
	}
	if got[1] != "b." || got[2] != "c." {
		t.Errorf("outputs %v, want b and c", got)
	}
}
