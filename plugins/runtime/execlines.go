package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// ExecModeLines is the exec mode (Function.ExecMode, the spec's mode =
// "lines") in which an instance is one long-running process of the
// function's command, handed one event per line: a call writes its input
// and a newline to the process's stdin, and its output is the next line
// the process writes to stdout, without the newline. Calls to one
// instance run one at a time, in order. The default mode, "fork", forks
// the command once per call (Exec). docs/jobs.md, "exec functions".
const ExecModeLines = "lines"

// maxLine bounds one output line of a lines-mode process.
const maxLine = 16 << 20

// linesInstance is an exec instance in lines mode.
type linesInstance struct {
	fn      *Function
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	release func()
	exited  chan struct{}
	// calls holds one call at a time: the process reads its lines in
	// order and answers each before the next.
	calls sync.Mutex
	// info is the call being run, to which stderr lines are attributed.
	infoMu sync.Mutex
	info   CallInfo
	stderr *tailBuffer
	// waitErr is the process's exit, set before exited closes.
	waitErr error
}

// startLines starts the function's command for a lines-mode instance.
func startLines(fn *Function) (Instance, error) {
	i := &linesInstance{fn: fn, exited: make(chan struct{})}
	cmd := exec.Command(fn.Command[0], fn.Command[1:]...)
	cmd.Dir = fn.Dir
	cmd.Env = environ(fn, map[string]string{"BUTTER_FUNCTION": fn.Name, "BUTTER_EXEC_MODE": ExecModeLines})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// The parent's end of stdout is its own pipe, not cmd.StdoutPipe:
	// Wait closes a StdoutPipe as soon as the process exits, which can
	// drop the lines it wrote just before exiting, still unread.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		_ = stdin.Close()
		return nil, err
	}
	cmd.Stdout = stdoutW
	stderrLog, flushStderr := attributedLines(fn.Logs, "stderr", func() CallInfo {
		i.infoMu.Lock()
		defer i.infoMu.Unlock()
		return i.info
	})
	i.stderr = &tailBuffer{n: stderrTail, w: stderrLog}
	cmd.Stderr = i.stderr
	cmd.WaitDelay = time.Second
	release, err := startLimited(cmd, fn)
	_ = stdoutW.Close() // the child holds its copy
	if err != nil {
		_ = stdout.Close()
		return nil, fmt.Errorf("start %s: %w", fn.Command[0], err)
	}
	i.cmd, i.stdin, i.stdout, i.release = cmd, stdin, bufio.NewReaderSize(stdout, 64<<10), release
	go func() {
		i.waitErr = cmd.Wait()
		// What the process wrote before it exited stays readable; a
		// process it left behind holding stdout open cannot block a
		// read past WaitDelay.
		_ = stdout.SetReadDeadline(time.Now().Add(cmd.WaitDelay))
		flushStderr()
		release()
		close(i.exited)
		// Reads happen under calls; the last one is done once it is held.
		i.calls.Lock()
		_ = stdout.Close()
		i.calls.Unlock()
	}()
	return i, nil
}

// Invoke hands the call's input to the process as one line and answers
// with the line it writes back. An input of more than one line (one
// trailing newline is dropped) is a PreconditionFailed; a process that
// exits, or closes its stdout, fails its instance; a call past its
// deadline kills the process (the instance is replaced) and is a
// Timeout.
func (i *linesInstance) Invoke(ctx context.Context, inv *Invocation) error {
	select {
	case <-i.exited:
		return errGone
	default:
	}
	in, err := io.ReadAll(inv.Input)
	if err != nil {
		return err
	}
	in, perr := i.oneLine(in)
	if perr != nil {
		return perr
	}
	i.calls.Lock()
	defer i.calls.Unlock()
	i.infoMu.Lock()
	i.info = callInfo(inv.Meta)
	i.infoMu.Unlock()

	type answer struct {
		line []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		if _, err := i.stdin.Write(append(in, '\n')); err != nil {
			done <- answer{err: err}
			return
		}
		line, err := i.readLine()
		done <- answer{line: line, err: err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		i.kill()
		<-done
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s wrote no line before its deadline (mode = \"lines\": the process was stopped)", i.fn.Name)}
		}
		return ctx.Err()
	}
	if a.err != nil {
		i.kill()
		<-i.exited
		return fmt.Errorf("%w: %s (mode = \"lines\") %s", ErrInstanceGone, i.fn.Command[0], i.exitWords(a.err))
	}
	_, err = inv.Output.Write(bytes.TrimSuffix(a.line, []byte("\n")))
	return err
}

// Batches reports that a lines-mode instance runs batches: their lines
// go to the process at once, and its answers are read as they come.
func (i *linesInstance) Batches() bool { return true }

// InvokeBatch writes the batch's events to the process as lines, in one
// write, while it reads the answers, one line per event, in order
// (runtime.Batcher). An event of more than one line fails as in Invoke,
// and the events after it are skipped, never sent; a process that exits
// or a deadline fails the event it was answering (an instance failure,
// or a Timeout: the process is killed) and skips the rest.
func (i *linesInstance) InvokeBatch(ctx context.Context, b *Batch) []Result {
	res := make([]Result, b.Count)
	skip := func(from int, msg string) {
		for k := from; k < len(res); k++ {
			res[k].Err = &proto.Error{Type: proto.Skipped, Message: msg}
		}
	}
	select {
	case <-i.exited:
		for k := range res {
			res[k].Err = errGone
		}
		return res
	default:
	}
	events := b.Encoded()
	payload := proto.AppendBatchHead(make([]byte, 0, 12+len(events)), 0, b.Count)
	_, _, r, err := proto.NewBatchReader(append(payload, events...))
	if err != nil {
		for k := range res {
			res[k].Err = err
		}
		return res
	}
	// The lines to send: the events up to the first of several lines.
	var lines []byte
	n := b.Count
	var ev proto.BatchEvent
	for k := 0; r.Next(&ev); k++ {
		in, perr := i.oneLine(ev.Input)
		if perr != nil {
			res[k].Err = perr
			skip(k+1, "an event before it failed")
			n = k
			break
		}
		lines = append(append(lines, in...), '\n')
	}
	if n == 0 {
		return res
	}
	i.calls.Lock()
	defer i.calls.Unlock()
	i.infoMu.Lock()
	i.info = CallInfo{}
	i.infoMu.Unlock()
	if !b.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, b.Deadline)
		defer cancel()
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := i.stdin.Write(lines)
		wrote <- err
	}()
	type answer struct {
		line []byte
		err  error
	}
	answers := make(chan answer, 1)
	stopRead, readDone := make(chan struct{}), make(chan struct{})
	// The reader is done before the batch returns: the next call reads
	// the same stdout.
	defer func() {
		close(stopRead)
		<-readDone
	}()
	go func() {
		defer close(readDone)
		for range n {
			line, err := i.readLine()
			if err == nil {
				line = bytes.Clone(bytes.TrimSuffix(line, []byte("\n")))
			}
			select {
			case answers <- answer{line, err}:
			case <-stopRead:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	outputs := make([][]byte, 0, n)
	for k := 0; k < n; k++ {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			i.kill()
			<-i.exited
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				res[k].Err = &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s wrote no line before the batch's deadline (mode = \"lines\": the process was stopped)", i.fn.Name)}
			} else {
				res[k].Err = ctx.Err()
			}
			skip(k+1, "an event before it failed")
			<-wrote
			i.okBatch(b, outputs)
			return res
		}
		if a.err != nil {
			i.kill()
			<-i.exited
			res[k].Err = fmt.Errorf("%w: %s (mode = \"lines\") %s", ErrInstanceGone, i.fn.Command[0], i.exitWords(a.err))
			skip(k+1, "an event before it failed")
			<-wrote
			i.okBatch(b, outputs)
			return res
		}
		res[k].Output = a.line
		outputs = append(outputs, a.line)
	}
	<-wrote
	i.okBatch(b, outputs)
	return res
}

// oneLine is an event's input as the line sent for it: one trailing
// newline dropped. An input of several lines is a PreconditionFailed.
func (i *linesInstance) oneLine(in []byte) ([]byte, error) {
	in = bytes.TrimSuffix(in, []byte("\n"))
	if n := bytes.Count(in, []byte("\n")); n > 0 {
		return nil, &proto.Error{Type: proto.PreconditionFailed, Message: fmt.Sprintf("%s reads one line per event (mode = \"lines\"), and this input has %d: send one-line inputs (JSON without newlines), or use mode = \"fork\"", i.fn.Name, n+1)}
	}
	return in, nil
}

// readLine reads the process's next line, newline included, up to
// maxLine bytes (bufio.ErrBufferFull past it). The line may share the
// reader's buffer: it is valid until the next read.
func (i *linesInstance) readLine() ([]byte, error) {
	line, err := i.stdout.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) && len(line) < maxLine {
		var more []byte
		more, err = i.stdout.ReadSlice('\n')
		line = append(append([]byte(nil), line...), more...)
	}
	return line, err
}

// okBatch hands the batch's succeeded outputs to b.OK, if any.
func (i *linesInstance) okBatch(b *Batch, outputs [][]byte) {
	if b.OK != nil && len(outputs) > 0 {
		b.OK(0, outputs)
	}
}

// exitWords says why the process gave no line, after read error err.
func (i *linesInstance) exitWords(err error) string {
	msg := "closed its output"
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		msg = fmt.Sprintf("wrote a line longer than %d bytes", maxLine)
	case i.waitErr != nil:
		msg = "exited with " + i.waitErr.Error()
	}
	if tail := i.stderr.String(); tail != "" {
		msg += ": " + tail[strings.LastIndexByte(tail, '\n')+1:]
	}
	return msg
}

// kill ends the process group.
func (i *linesInstance) kill() {
	if i.cmd.Process != nil {
		_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Stop closes the process's stdin, so that it ends on its own once its
// calls in flight are answered, and kills it after grace.
func (i *linesInstance) Stop(grace time.Duration) error {
	go func() {
		// After the call in flight, if any: its line is written.
		i.calls.Lock()
		_ = i.stdin.Close()
		i.calls.Unlock()
	}()
	select {
	case <-i.exited:
	case <-time.After(grace):
		i.kill()
		<-i.exited
	}
	return nil
}

func (i *linesInstance) Exited() <-chan struct{} { return i.exited }
func (i *linesInstance) Pid() int                { return i.cmd.Process.Pid }
