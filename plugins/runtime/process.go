package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"sync/atomic"
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

	// interpreters are the node and python3 past a version manager's
	// shim, learnt from a worker's HELLO, by function (shims.go).
	interpreters sync.Map
}

func (p *Process) command(ctx context.Context, fn *Function) (*exec.Cmd, error) {
	switch fn.Runtime {
	case "node":
		return exec.Command(p.interpreter("node", fn), p.SDKs.Node), nil
	case "python":
		return exec.Command(p.interpreter("python3", fn), "-u", p.SDKs.Python), nil
	case "go":
		bin, err := p.SDKs.goBinary(ctx, fn)
		if err != nil {
			return nil, err
		}
		return exec.Command(bin), nil
	case "java":
		cp, err := p.SDKs.javaClassPath(ctx, fn) // java.go
		if err != nil {
			return nil, err
		}
		return exec.Command("java", javaArgs(fn, cp)...), nil
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
	if fn.Runtime == "python" {
		// Python buffers its standard output in a pipe: a print would
		// reach the log after its call ended, pinned on no call (the log
		// lines' attribution, soleCall). The function's env may set it.
		if _, set := fn.Env["PYTHONUNBUFFERED"]; !set {
			cmd.Env = append(cmd.Env, "PYTHONUNBUFFERED=1")
		}
	}
	argv0 := cmd.Args[0] // before a sandbox wraps the command
	if filepath.IsAbs(argv0) && fn.Runtime != "go" && fn.Runtime != "java" {
		// Past a shim, as the shim's `exec` would run it: the
		// interpreter's directory first on PATH.
		cmd.Env = prependPath(cmd.Env, filepath.Dir(argv0))
	}
	cmd.ExtraFiles = []*os.File{toR, fromW} // fds 3 and 4
	// A line is pinned on the call the instance was running, when it
	// ran one alone (soleCall).
	var started atomic.Pointer[procInstance]
	attr := func() CallInfo {
		if i := started.Load(); i != nil {
			return i.soleCall()
		}
		return CallInfo{}
	}
	stdoutLog, flushStdout := attributedLines(fn.Logs, "stdout", attr)
	stderrLog, flushStderr := attributedLines(fn.Logs, "stderr", attr)
	stderr := &tailBuffer{n: stderrTail, w: stderrLog}
	cmd.Stdout = stdoutLog
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
	started.Store(inst)
	waited := make(chan struct{})
	go func() {
		inst.waitErr = cmd.Wait()
		flushStdout()
		flushStderr()
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
			} else if h.Protocol < proto.MinVersion || h.Protocol > proto.Version {
				hello <- fmt.Errorf("worker speaks protocol %d, the pool speaks %d to %d", h.Protocol, proto.MinVersion, proto.Version)
			} else {
				inst.batches = h.Protocol >= 2
				p.learn(fn, argv0, h.Executable)
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
		if errors.Is(startErr, io.EOF) && inst.waitErr != nil {
			startErr = fmt.Errorf("the worker exited (%v) before its HELLO", inst.waitErr)
		}
		return nil, &OutputError{Err: fmt.Errorf("start %s worker for %s: %w", fn.Runtime, fn.Name, startErr), Output: stderr.String()}
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
	batches bool // the worker speaks protocol 2 (set before any call)

	mu     sync.Mutex
	nextID uint32
	calls  map[uint32]*procCall
	// lastAlone is the last call that ended while it ran alone, at
	// lastAloneAt: the late lines of its output are pinned on it.
	lastAlone   CallInfo
	lastAloneAt time.Time
	gone        bool
	closing     bool

	exited   chan struct{}
	stopOnce sync.Once
}

type procCall struct {
	info   CallInfo   // what its log lines are attributed to
	mu     sync.Mutex // guards out against a write after the call gave up
	done   bool
	ctx    context.Context
	out    io.Writer
	outErr error
	calls  CallHandler
	head   func(proto.HeadMsg)
	wrote  bool // output was written: a HEAD now comes too late
	result chan proto.ResultMsg
	// batch is set for a batch (InvokeBatch): its RESULTS are read into
	// it, and result gets a value once the batch has ended.
	batch *batchCall
}

// batchCall collects a batch's results, in order; readLoop writes them,
// and signals more after each RESULTS frame.
type batchCall struct {
	more chan struct{}
	mu   sync.Mutex
	res  []proto.BatchResult
	got  int // results read
}

// ended reports whether every result came, or a failure ended the batch.
func (b *batchCall) ended() bool {
	return b.got == len(b.res) || (b.got > 0 && b.res[b.got-1].Err != nil)
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
		if c.batch != nil {
			switch f.Type {
			case proto.Results:
				b := c.batch
				b.mu.Lock()
				first, n, err := proto.ReadResults(f.Payload, b.res)
				if err != nil || first != b.got || b.ended() {
					b.mu.Unlock()
					i.kill() // a broken worker
					continue
				}
				b.got += n
				ended := b.ended()
				b.mu.Unlock()
				select {
				case b.more <- struct{}{}:
				default:
				}
				if ended {
					i.mu.Lock()
					delete(i.calls, f.ID)
					i.mu.Unlock()
					c.result <- proto.ResultMsg{}
				}
			case proto.Call:
				go i.answer(f.ID, c, f.Payload)
			default:
				i.kill()
			}
			continue
		}
		switch f.Type {
		case proto.Data:
			c.mu.Lock()
			if !c.done && c.outErr == nil {
				c.wrote = true
				_, c.outErr = c.out.Write(f.Payload)
			}
			c.mu.Unlock()
		case proto.Head:
			// The answer's status and headers (protocol 3): taken only
			// before the call's output, and only for an HTTP call.
			var h proto.HeadMsg
			if json.Unmarshal(f.Payload, &h) != nil {
				continue // a bad head is no head: the call answers 200
			}
			c.mu.Lock()
			if !c.done && !c.wrote && c.head != nil {
				c.wrote = true // one head per call
				c.head(h)
			}
			c.mu.Unlock()
		case proto.Result:
			var res proto.ResultMsg
			if err := proto.DecodeResult(f.Payload, &res); err != nil {
				res.Error = &proto.Error{Type: proto.Exception, Message: "bad RESULT from worker: " + err.Error()}
			}
			i.mu.Lock()
			if len(i.calls) == 1 {
				// It ran alone: a line it printed last may come through
				// the stdout pipe after this RESULT (soleCall).
				i.lastAlone, i.lastAloneAt = c.info, time.Now()
			}
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
		return errGone
	}
	i.nextID++
	id := i.nextID
	c := &procCall{ctx: ctx, out: inv.Output, calls: inv.Calls, head: inv.Head, result: make(chan proto.ResultMsg, 1), info: callInfo(inv.Meta)}
	var set [][2]string // over inv.Meta: the call's span (SpanRecorder)
	if inv.CallSpan != "" {
		set = [][2]string{{"ce_traceparent", inv.CallSpan}, {proto.MetaSpan, "1"}}
		c.info.Traceparent = inv.CallSpan
	}
	i.calls[id] = c
	i.mu.Unlock()

	deadline := inv.Deadline
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	meta := proto.InvokeMsg{Function: i.fn.Name, Options: inv.Options, Meta: inv.Meta, State: inv.State}
	if !deadline.IsZero() {
		meta.Deadline = deadline.UnixMilli() // 0, none, otherwise
	}
	if in, ok := smallInput(inv.Input); ok {
		// The whole call goes in one write, from this goroutine.
		frames, err := invokeFrames(id, meta, in, set)
		if err == nil {
			err = i.w.WriteFrames(frames)
		}
		if err != nil {
			if errors.Is(err, syscall.EPIPE) {
				// The worker's end of the pipe was closed before it had
				// the call's END: the call did not run. Its input is
				// left unread, for another instance.
				if r, ok := inv.Input.(*bytes.Reader); ok {
					_, _ = r.Seek(-int64(len(in)), io.SeekCurrent)
				}
				return notSent(i.broken(err))
			}
			return i.broken(err)
		}
		select {
		case res, ok := <-c.result:
			return i.finish(res, ok, c, inv)
		case <-ctx.Done():
			return i.cancel(ctx, id, c)
		}
	}
	m, err := proto.AppendInvoke(nil, meta, set...)
	if err == nil {
		err = i.w.Write(proto.Invoke, id, m)
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) {
			// Nothing of the call reached the worker, and its input
			// is unread.
			return notSent(i.broken(err))
		}
		return i.broken(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- i.sendInput(id, inv.Input) }()

	select {
	case res, ok := <-c.result:
		return i.finish(res, ok, c, inv)
	case err := <-sent:
		if errors.Is(err, ErrInput) && i.batches {
			return i.abandon(id, c, err)
		}
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

// Batches reports whether the worker speaks protocol 2, with batches.
func (i *procInstance) Batches() bool { return i.batches }

// RecordsHandlerSpans marks the process runtime's instances as
// SpanRecorders: their workers record the handler's span.
func (i *procInstance) RecordsHandlerSpans() {}

// InvokeBatch sends a batch's events in one BATCH frame and collects their
// results (runtime.Batcher).
func (i *procInstance) InvokeBatch(ctx context.Context, b *Batch) []Result {
	res := make([]Result, b.Count)
	skip := func(from int, msg string) {
		for k := from; k < len(res); k++ {
			res[k].Err = &proto.Error{Type: proto.Skipped, Message: msg}
		}
	}
	if !i.batches {
		skip(0, "the worker does not run batches")
		return res
	}
	if b.Count == 0 {
		return res
	}
	events := b.Encoded()
	var deadline int64
	if !b.Deadline.IsZero() {
		deadline = b.Deadline.UnixMilli()
	}
	var frame []byte
	if b.Reserved {
		// The head goes in the room kept for it: no copy of the events.
		frame = b.Events[:0:BatchHeadroom]
	} else {
		frame = make([]byte, 0, BatchHeadroom+len(events))
	}
	frame, err := proto.AppendFrameHead(frame, proto.Batch, 0, 12+len(events))
	if err != nil {
		for k := range res {
			res[k].Err = fmt.Errorf("a batch of %d events: %w", b.Count, err)
		}
		return res
	}
	frame = proto.AppendBatchHead(frame, deadline, b.Count)
	if b.Reserved {
		frame = b.Events
	} else {
		frame = append(frame, events...)
	}

	i.mu.Lock()
	if i.gone || i.closing {
		i.mu.Unlock()
		for k := range res {
			res[k].Err = errGone
		}
		return res
	}
	i.nextID++
	id := i.nextID
	bc := &batchCall{res: make([]proto.BatchResult, b.Count), more: make(chan struct{}, 1)}
	c := &procCall{ctx: ctx, result: make(chan proto.ResultMsg, 1), batch: bc}
	if b.Calls != nil {
		c.calls = func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg {
			if call.Index < 0 || call.Index >= b.Count {
				return proto.ReplyMsg{Error: fmt.Sprintf("no event %d in a batch of %d", call.Index, b.Count)}
			}
			return b.Calls(ctx, call.Index, call)
		}
	}
	i.calls[id] = c
	i.mu.Unlock()
	binary.BigEndian.PutUint32(frame[5:9], id)

	sent := make(chan error, 1)
	go func() {
		err := i.w.WriteFrames(frame)
		if b.Reserved {
			releaseBatch(frame)
		}
		sent <- err
	}()
	// deliver passes the successes that came to b.OK.
	delivered := 0
	deliver := func() {
		if b.OK == nil {
			return
		}
		bc.mu.Lock()
		got := bc.got
		bc.mu.Unlock()
		first := delivered
		var outputs [][]byte
		for ; delivered < got && bc.res[delivered].Err == nil; delivered++ {
			outputs = append(outputs, bc.res[delivered].Output)
		}
		if len(outputs) > 0 {
			b.OK(first, outputs)
		}
	}
	// collect fills res from what came; the first event without a
	// result fails with err (when not nil), the rest are skipped. With
	// cancelled, a failure that ended the batch is taken for the
	// cancellation's doing, and fails with err too.
	collect := func(err error, msg string, cancelled bool) []Result {
		k := 0
		for ; k < bc.got; k++ {
			r := bc.res[k]
			res[k].Output = r.Output
			if r.Err != nil {
				res[k].Err = r.Err
				if cancelled {
					res[k].Err = err
				}
				skip(k+1, "an event before it in its batch failed")
				return res
			}
		}
		if k < len(res) {
			res[k].Err = err
			skip(k+1, msg)
		}
		return res
	}
	for {
		select {
		case <-bc.more:
			deliver()
		case _, ok := <-c.result:
			deliver()
			if !ok {
				// The worker died: nothing after its last RESULTS ran
				// to the end.
				return collect(i.broken(nil), "its worker exited", false)
			}
			return collect(nil, "", false)
		case err := <-sent:
			sent = nil
			if err != nil && errors.Is(err, syscall.EPIPE) {
				// The worker's end of the pipe was closed before it had
				// the whole BATCH: none of its events ran.
				return collect(notSent(i.broken(err)), "its worker exited", false)
			}
			if err != nil {
				return collect(i.broken(err), "its worker exited", false)
			}
		case <-ctx.Done():
			i.cancelBatch(id, c)
			deliver()
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not answer before its deadline", i.fn.Name)}
			}
			// The results that came count; the event that was running
			// is the one that timed out.
			return collect(err, "its batch was cancelled", true)
		}
	}
}

// cancelBatch sends CANCEL for a batch and gives the worker CancelGrace to
// end it; a worker that does not is hung, and is killed. Results that come
// meanwhile are kept; once it returns, readLoop writes no more of them.
func (i *procInstance) cancelBatch(id uint32, c *procCall) {
	if i.cancelWait(id, c) {
		<-i.exited
	}
}

// cancelWait sends CANCEL for a call, drops whatever output still comes
// (its caller is gone), and waits up to CancelGrace for its end: a worker
// that does not answer is hung, and is killed. It reports whether it
// killed the worker.
func (i *procInstance) cancelWait(id uint32, c *procCall) (killed bool) {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	_ = i.w.Write(proto.Cancel, id, nil)
	grace := i.p.CancelGrace
	if grace == 0 {
		grace = time.Second
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.result:
		return false
	case <-timer.C:
		i.kill()
		return true
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
func invokeFrames(id uint32, meta proto.InvokeMsg, in []byte, set [][2]string) ([]byte, error) {
	// The INVOKE payload is encoded in place, after its frame's head
	// (proto.AppendInvoke: no reflection, no copy of the metadata).
	buf := make([]byte, 9, 3*9+512+len(in))
	buf, err := proto.AppendInvoke(buf, meta, set...)
	if err != nil {
		return nil, fmt.Errorf("worker protocol: encode INVOKE: %w", err)
	}
	if _, err := proto.AppendFrameHead(buf[:0], proto.Invoke, id, len(buf)-9); err != nil {
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
				return fmt.Errorf("%w: %w", ErrInput, err)
			}
		}
	}
	return i.w.Write(proto.End, id, nil)
}

func (i *procInstance) finish(res proto.ResultMsg, ok bool, c *procCall, inv *Invocation) error {
	if !ok {
		return i.broken(nil)
	}
	inv.Span = res.Span // a failed call's span too
	if res.Error != nil {
		return res.Error
	}
	if c.outErr != nil {
		return fmt.Errorf("write output: %w", c.outErr)
	}
	inv.NewState = res.State
	return nil
}

// abandon gives up a call whose input could not be read to its end: a
// worker of protocol 2 drops an invocation cancelled before its END, and
// answers it, so the worker is kept; one that does not answer within
// CancelGrace is killed. A worker of protocol 1 cannot drop it (an END
// would run the handler on a truncated input): Invoke kills it instead.
func (i *procInstance) abandon(id uint32, c *procCall, err error) error {
	i.cancelWait(id, c)
	return err
}

// notSent marks the failure of a call that never reached its worker
// (ErrNotSent).
func notSent(err error) error { return fmt.Errorf("%w: %w", ErrNotSent, err) }

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
	return &OutputError{Err: fmt.Errorf("%w: %s", ErrInstanceGone, msg), Output: i.stderr.String()}
}

// cancel sends CANCEL and gives the worker CancelGrace to answer; a worker
// that does not is hung, and is killed so that the pool replaces it.
func (i *procInstance) cancel(ctx context.Context, id uint32, c *procCall) error {
	i.cancelWait(id, c)
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

// lateLine is how long after a call that ran alone ended a line its
// instance prints is still pinned on it: the line and the call's RESULT
// come through different pipes, and the pool may read the RESULT first.
const lateLine = 200 * time.Millisecond

// soleCall is the call the instance runs, when it runs exactly one that
// is not a batch, or, when it runs none, the one that ended less than
// lateLine ago having run alone: what a line it prints now is
// attributed to.
func (i *procInstance) soleCall() CallInfo {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.calls) == 0 && time.Since(i.lastAloneAt) < lateLine {
		return i.lastAlone
	}
	if len(i.calls) != 1 {
		return CallInfo{}
	}
	for _, c := range i.calls {
		if c.batch == nil {
			return c.info
		}
	}
	return CallInfo{}
}
