package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// Process runs long-lived workers that speak the worker protocol on fds 3
// and 4: node and python through their SDK's worker script, go as the
// function's own binary built with the Go SDK.
type Process struct {
	SDKs *SDKs
	// StartTimeout bounds the time from exec to HELLO. Zero means 30s.
	StartTimeout time.Duration
	// CancelGrace is how long a cancelled call may take to return before
	// its worker is killed as hung. Zero means 1s.
	CancelGrace time.Duration
}

func (p *Process) command(ctx context.Context, fn *Function) (*exec.Cmd, error) {
	switch fn.Runtime {
	case "node":
		return exec.Command("node", p.SDKs.Node), nil
	case "python":
		return exec.Command("python3", "-u", p.SDKs.Python), nil
	case "go":
		bin, err := p.SDKs.goBinary(ctx, fn)
		if err != nil {
			return nil, err
		}
		return exec.Command(bin), nil
	}
	return nil, fmt.Errorf("runtime %q has no worker", fn.Runtime)
}

// Start starts a worker and waits for its HELLO.
func (p *Process) Start(ctx context.Context, fn *Function) (Instance, error) {
	cmd, err := p.command(ctx, fn)
	if err != nil {
		return nil, err
	}
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return nil, err
	}
	conc := max(fn.Concurrency, 1)
	cmd.Dir = fn.Dir
	cmd.Env = environ(fn, map[string]string{
		"BUTTER_PROTOCOL":    strconv.Itoa(proto.Version),
		"BUTTER_FUNCTION":    fn.Name,
		"BUTTER_HANDLER":     fn.Handler,
		"BUTTER_CONCURRENCY": strconv.Itoa(conc),
	})
	if fn.Runtime == "go" {
		// A Go worker runs at most conc handlers at once: more Ps than
		// that only add idle threads that the runtime wakes to spin on
		// every goroutine handoff, on cores that the pool's other
		// workers share (docs/worker-protocol.md). The function's env
		// may set its own.
		if _, set := fn.Env["GOMAXPROCS"]; !set && conc < goruntime.NumCPU() {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(conc))
		}
	}
	cmd.ExtraFiles = []*os.File{toR, fromW} // fds 3 and 4
	stderr := &tailBuffer{n: stderrTail, w: fn.Logs}
	cmd.Stdout = fn.Logs
	cmd.Stderr = stderr
	release, err := startLimited(cmd, fn)
	toR.Close()
	fromW.Close()
	if err != nil {
		toW.Close()
		fromR.Close()
		return nil, fmt.Errorf("start %s worker for %s: %w", fn.Runtime, fn.Name, err)
	}
	inst := &procInstance{
		fn:     fn,
		p:      p,
		cmd:    cmd,
		toW:    toW,
		w:      proto.NewWriter(toW),
		r:      proto.NewReader(fromR),
		fromR:  fromR,
		calls:  map[uint32]*procCall{},
		exited: make(chan struct{}),
		stderr: stderr,
	}
	waited := make(chan struct{})
	go func() {
		inst.waitErr = cmd.Wait()
		release()
		close(waited)
	}()
	hello := make(chan error, 1)
	go func() {
		f, err := inst.r.Read()
		switch {
		case err != nil:
			hello <- err
		case f.Type != proto.Hello:
			hello <- fmt.Errorf("first frame is %s, want HELLO", f.Type)
		default:
			var h proto.HelloMsg
			if err := json.Unmarshal(f.Payload, &h); err != nil {
				hello <- err
			} else if h.Protocol != proto.Version {
				hello <- fmt.Errorf("worker speaks protocol %d, the pool speaks %d", h.Protocol, proto.Version)
			} else {
				inst.ordered = h.Ordered
				hello <- nil
			}
		}
	}()
	timeout := p.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	var startErr error
	select {
	case startErr = <-hello:
	case <-time.After(timeout):
		startErr = fmt.Errorf("no HELLO within %s", timeout)
	case <-ctx.Done():
		startErr = ctx.Err()
	}
	if startErr != nil {
		inst.kill()
		<-waited
		msg := fmt.Sprintf("start %s worker for %s: %v", fn.Runtime, fn.Name, startErr)
		if tail := stderr.String(); tail != "" {
			msg += ": " + tail
		}
		return nil, errors.New(msg)
	}
	go inst.readLoop(waited)
	return inst, nil
}

type procInstance struct {
	fn      *Function
	p       *Process
	cmd     *exec.Cmd
	toW     *os.File
	fromR   *os.File
	w       *proto.Writer
	r       *proto.Reader
	stderr  *tailBuffer
	waitErr error
	ordered bool // the worker runs ordered batches (set before any call)

	mu      sync.Mutex
	nextID  uint32
	calls   map[uint32]*procCall
	gone    bool
	closing bool

	exited   chan struct{}
	stopOnce sync.Once
}

type procCall struct {
	mu     sync.Mutex // guards out against a write after the call gave up
	done   bool
	ctx    context.Context
	out    io.Writer
	outErr error
	calls  CallHandler
	result chan proto.ResultMsg
}

func (i *procInstance) Pid() int                { return i.cmd.Process.Pid }
func (i *procInstance) Exited() <-chan struct{} { return i.exited }

func (i *procInstance) kill() {
	_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL)
}

// readLoop dispatches the worker's frames until its stream ends, then
// fails every call still in flight.
func (i *procInstance) readLoop(waited chan struct{}) {
	for {
		f, err := i.r.Read()
		if err != nil {
			break
		}
		i.mu.Lock()
		c := i.calls[f.ID]
		i.mu.Unlock()
		if c == nil {
			continue
		}
		switch f.Type {
		case proto.Data:
			c.mu.Lock()
			if !c.done && c.outErr == nil {
				_, c.outErr = c.out.Write(f.Payload)
			}
			c.mu.Unlock()
		case proto.Result:
			var res proto.ResultMsg
			if err := json.Unmarshal(f.Payload, &res); err != nil {
				res.Error = &proto.Error{Type: proto.Exception, Message: "bad RESULT from worker: " + err.Error()}
			}
			i.mu.Lock()
			delete(i.calls, f.ID)
			i.mu.Unlock()
			c.result <- res
		case proto.Call:
			go i.answer(f.ID, c, f.Payload)
		default:
			// A worker must not send other frames: it is broken.
			i.kill()
		}
	}
	i.kill()
	<-waited
	i.fromR.Close()
	i.mu.Lock()
	i.gone = true
	pending := i.calls
	i.calls = map[uint32]*procCall{}
	i.mu.Unlock()
	for _, c := range pending {
		close(c.result)
	}
	i.stopOnce.Do(func() { close(i.exited) })
}

func (i *procInstance) answer(id uint32, c *procCall, payload []byte) {
	var call proto.CallMsg
	rep := proto.ReplyMsg{}
	if err := json.Unmarshal(payload, &call); err != nil {
		rep.Error = "bad CALL: " + err.Error()
	} else {
		rep.Seq = call.Seq
		switch {
		case call.Op == "deadline":
			if d, ok := c.ctx.Deadline(); ok {
				rep.OK, rep.RemainingMS = true, time.Until(d).Milliseconds()
			}
		case c.calls != nil:
			rep = c.calls(c.ctx, call)
			rep.Seq = call.Seq
		default:
			rep.Error = "unsupported op"
		}
	}
	_ = i.w.WriteJSON(proto.Reply, id, rep)
}

func (i *procInstance) Invoke(ctx context.Context, inv *Invocation) error {
	i.mu.Lock()
	if i.gone || i.closing {
		i.mu.Unlock()
		return ErrInstanceGone
	}
	i.nextID++
	id := i.nextID
	c := &procCall{ctx: ctx, out: inv.Output, calls: inv.Calls, result: make(chan proto.ResultMsg, 1)}
	i.calls[id] = c
	i.mu.Unlock()

	deadline := inv.Deadline
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	meta := proto.InvokeMsg{Function: i.fn.Name, Deadline: deadline.UnixMilli(), Options: inv.Options, Meta: inv.Meta, State: inv.State}
	if in, ok := smallInput(inv.Input); ok {
		// The whole call goes in one write, from this goroutine.
		frames, err := invokeFrames(id, meta, in)
		if err == nil {
			err = i.w.WriteFrames(frames)
		}
		if err != nil {
			return i.broken(err)
		}
		select {
		case res, ok := <-c.result:
			return i.finish(res, ok, c, inv)
		case <-ctx.Done():
			return i.cancel(ctx, id, c)
		}
	}
	if err := i.w.WriteJSON(proto.Invoke, id, meta); err != nil {
		return i.broken(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- i.sendInput(id, inv.Input) }()

	select {
	case res, ok := <-c.result:
		return i.finish(res, ok, c, inv)
	case err := <-sent:
		if err != nil {
			return i.broken(err)
		}
	case <-ctx.Done():
		return i.cancel(ctx, id, c)
	}
	select {
	case res, ok := <-c.result:
		return i.finish(res, ok, c, inv)
	case <-ctx.Done():
		return i.cancel(ctx, id, c)
	}
}

// Ordered reports whether the worker advertised ordered batches.
func (i *procInstance) Ordered() bool { return i.ordered }

// InvokeOrdered sends a batch's INVOKE, DATA and END frames in one write,
// each INVOKE marked as part of the ordered batch, and collects the
// results in order (runtime.Batcher).
func (i *procInstance) InvokeOrdered(ctx context.Context, invs []*Invocation) []error {
	errs := make([]error, len(invs))
	skipRest := func(from int, msg string) {
		for k := from; k < len(invs); k++ {
			if errs[k] == nil {
				errs[k] = &proto.Error{Type: proto.Skipped, Message: msg}
			}
		}
	}
	if !i.ordered {
		skipRest(0, "the worker does not run ordered batches")
		return errs
	}
	// Inputs first: one that cannot be read fails as Invoke would, and
	// the batch ends before it.
	var data []byte
	ends := make([]int, 0, len(invs))
	bp := inputBufs.Get().(*[]byte)
	for k, inv := range invs {
		if inv.Input != nil {
			var err error
			if data, err = readAllInto(data, inv.Input, *bp); err != nil {
				errs[k] = fmt.Errorf("read input: %w", err)
				skipRest(k+1, "an invocation before it in its ordered batch failed")
				break
			}
		}
		ends = append(ends, len(data))
	}
	inputBufs.Put(bp)
	invs = invs[:len(ends)]
	if len(invs) == 0 {
		return errs
	}

	i.mu.Lock()
	if i.gone || i.closing {
		i.mu.Unlock()
		for k := range invs {
			errs[k] = ErrInstanceGone
		}
		return errs
	}
	ids := make([]uint32, len(invs))
	cs := make([]*procCall, len(invs))
	for k, inv := range invs {
		i.nextID++
		ids[k] = i.nextID
		cs[k] = &procCall{ctx: ctx, out: inv.Output, calls: inv.Calls, result: make(chan proto.ResultMsg, 1)}
		i.calls[ids[k]] = cs[k]
	}
	i.mu.Unlock()

	buf := make([]byte, 0, len(data)+len(invs)*(3*9+160))
	start := 0
	for k, inv := range invs {
		deadline := inv.Deadline
		if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		meta, err := json.Marshal(proto.InvokeMsg{Function: i.fn.Name, Deadline: deadline.UnixMilli(), Options: inv.Options, Meta: inv.Meta, State: inv.State,
			Ordered: true, Batch: ids[0], Index: k, Count: len(invs)})
		if err == nil {
			buf, err = proto.AppendFrame(buf, proto.Invoke, ids[k], meta)
		}
		if err != nil {
			// Never for metadata of strings: the instance is fine, the
			// batch is not; its frames were not sent.
			i.mu.Lock()
			for _, id := range ids {
				delete(i.calls, id)
			}
			i.mu.Unlock()
			for k := range invs {
				errs[k] = err
			}
			return errs
		}
		for in := data[start:ends[k]]; len(in) > 0; {
			n := min(len(in), proto.ChunkSize)
			buf, _ = proto.AppendFrame(buf, proto.Data, ids[k], in[:n])
			in = in[n:]
		}
		start = ends[k]
		buf, _ = proto.AppendFrame(buf, proto.End, ids[k], nil)
	}
	sent := make(chan error, 1)
	go func() { sent <- i.w.WriteFrames(buf) }()

	// Results come in order. After a failure the worker skips the rest;
	// their RESULTs are still awaited, so that their ids are free and
	// nothing of theirs is still to come.
	for k := 0; k < len(invs); {
		select {
		case res, ok := <-cs[k].result:
			errs[k] = i.finish(res, ok, cs[k], invs[k])
			if errs[k] != nil && !ok {
				// The worker died: nothing after it ran, and its
				// RESULTs never come.
				skipRest(k+1, "its worker exited")
				return errs
			}
			if errs[k] != nil {
				skipRest(k+1, "an invocation before it in its ordered batch failed")
			}
			k++
		case err := <-sent:
			sent = nil
			if err != nil {
				errs[k] = i.broken(err)
				skipRest(k+1, "its worker exited")
				return errs
			}
		case <-ctx.Done():
			i.cancelOrdered(ctx, cs[k:], ids[k:], errs[k:])
			if k > 0 && errs[k-1] != nil {
				// After a failure the worker runs nothing more.
				errs[k] = &proto.Error{Type: proto.Skipped, Message: "an invocation before it in its ordered batch failed"}
			}
			return errs
		}
	}
	return errs
}

// cancelOrdered cancels the invocations of a batch still in flight when
// its context ended, as cancel does one: the first fails with Timeout (or
// the context's error), the others, which the worker skips, as Skipped.
func (i *procInstance) cancelOrdered(ctx context.Context, cs []*procCall, ids []uint32, errs []error) {
	var frames []byte
	for k, c := range cs {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
		frames, _ = proto.AppendFrame(frames, proto.Cancel, ids[k], nil)
	}
	_ = i.w.WriteFrames(frames)
	grace := i.p.CancelGrace
	if grace == 0 {
		grace = time.Second
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, c := range cs {
		select {
		case <-c.result:
		case <-timer.C:
			i.kill()
			<-i.exited
		}
	}
	errs[0] = ctx.Err()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		errs[0] = &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not answer before its deadline", i.fn.Name)}
	}
	for k := 1; k < len(errs); k++ {
		errs[k] = &proto.Error{Type: proto.Skipped, Message: "its ordered batch was cancelled"}
	}
}

// readAllInto appends all of r to dst, reading through buf.
func readAllInto(dst []byte, r io.Reader, buf []byte) ([]byte, error) {
	if br, ok := r.(interface{ Len() int }); ok {
		dst = slices.Grow(dst, br.Len())
	}
	for {
		n, err := r.Read(buf)
		dst = append(dst, buf[:n]...)
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// inputBufs holds the buffers sendInput reads inputs through, one
// proto.ChunkSize each: allocating 64 KiB per call made garbage collection
// most of a call's tail latency (bench/NOTES.md, fix A).
var inputBufs = sync.Pool{New: func() any {
	b := make([]byte, proto.ChunkSize)
	return &b
}}

// maxInlineInput is the largest input in memory that Invoke sends with
// its INVOKE in one write from the caller's goroutine (well within a
// pipe's 64 KiB buffer); a larger input, or one that is not in memory,
// streams from a goroutine of its own (sendInput) while the output comes
// back. Sending a small input inline spares a goroutine and two write
// system calls per call (bench/NOTES.md).
const maxInlineInput = 32 << 10

// smallInput returns the bytes of an input that is in memory and at most
// maxInlineInput long: none, or a *bytes.Reader (the pool's HTTP endpoint
// reads small bodies whole), read to its end.
func smallInput(in io.Reader) ([]byte, bool) {
	switch r := in.(type) {
	case nil:
		return nil, true
	case *bytes.Reader:
		if r.Len() > maxInlineInput {
			return nil, false
		}
		b := make([]byte, r.Len())
		_, _ = r.Read(b)
		return b, true
	}
	return nil, false
}

// invokeFrames encodes a call's INVOKE, its input as one DATA frame (none
// when empty) and END.
func invokeFrames(id uint32, meta proto.InvokeMsg, in []byte) ([]byte, error) {
	m, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("worker protocol: encode INVOKE: %w", err)
	}
	buf := make([]byte, 0, 3*9+len(m)+len(in))
	if buf, err = proto.AppendFrame(buf, proto.Invoke, id, m); err != nil {
		return nil, err
	}
	if len(in) > 0 {
		buf, _ = proto.AppendFrame(buf, proto.Data, id, in)
	}
	return proto.AppendFrame(buf, proto.End, id, nil)
}

// sendInput streams in as DATA frames, then END. The DATA payloads are
// copied into their frames, so the buffer goes back to inputBufs on return.
func (i *procInstance) sendInput(id uint32, in io.Reader) error {
	if in != nil {
		bp := inputBufs.Get().(*[]byte)
		defer inputBufs.Put(bp)
		buf := *bp
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if werr := i.w.Write(proto.Data, id, buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read input: %w", err)
			}
		}
	}
	return i.w.Write(proto.End, id, nil)
}

func (i *procInstance) finish(res proto.ResultMsg, ok bool, c *procCall, inv *Invocation) error {
	if !ok {
		return i.broken(nil)
	}
	if res.Error != nil {
		return res.Error
	}
	if c.outErr != nil {
		return fmt.Errorf("write output: %w", c.outErr)
	}
	inv.NewState = res.State
	return nil
}

// broken reports a failed instance: the worker died or its pipe broke.
func (i *procInstance) broken(err error) error {
	i.kill()
	<-i.exited
	msg := fmt.Sprintf("%s worker of %s exited", i.fn.Runtime, i.fn.Name)
	if i.waitErr != nil {
		msg += " (" + i.waitErr.Error() + ")"
	} else if err != nil {
		msg += " (" + err.Error() + ")"
	}
	if tail := i.stderr.String(); tail != "" {
		msg += ": " + tail
	}
	return fmt.Errorf("%w: %s", ErrInstanceGone, msg)
}

// cancel sends CANCEL and gives the worker CancelGrace to answer; a worker
// that does not is hung, and is killed so that the pool replaces it.
func (i *procInstance) cancel(ctx context.Context, id uint32, c *procCall) error {
	c.mu.Lock()
	c.done = true // the caller is gone: drop whatever output still comes
	c.mu.Unlock()
	_ = i.w.Write(proto.Cancel, id, nil)
	grace := i.p.CancelGrace
	if grace == 0 {
		grace = time.Second
	}
	select {
	case <-c.result:
	case <-time.After(grace):
		i.kill()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not answer before its deadline", i.fn.Name)}
	}
	return ctx.Err()
}

// Stop closes the worker's input stream, waits up to grace for in-flight
// calls and the exit, then kills the process group.
func (i *procInstance) Stop(grace time.Duration) error {
	i.mu.Lock()
	i.closing = true
	i.mu.Unlock()
	_ = i.toW.Close()
	select {
	case <-i.exited:
	case <-time.After(grace):
		i.kill()
		<-i.exited
	}
	return nil
}
