package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
)

// batchOf encodes inputs as a runtime.Batch without metadata.
func batchOf(deadline time.Time, inputs ...string) *runtime.Batch {
	b := &runtime.Batch{Deadline: deadline, Count: len(inputs)}
	for _, in := range inputs {
		b.Events = proto.AppendEventHead(b.Events, 0)
		b.Events = proto.AppendInput(b.Events, []byte(in))
	}
	return b
}

// TestExecLinesBatches runs batches on a lines-mode exec instance (a real
// sh loop): every event answered in order through OK; a process that
// exits mid-batch fails the event it was answering as an instance
// failure and skips the rest; a batch past its deadline fails its
// current event as a Timeout (the process killed) and skips the rest.
func TestExecLinesBatches(t *testing.T) {
	script := `while IFS= read -r l; do case "$l" in exit) exit 3;; sleep) sleep 30;; esac; echo "got:$l"; done`
	inst := startLines(t, script)
	b := batchOf(time.Now().Add(10*time.Second), "a", "b", "c")
	var ok []string
	b.OK = func(first int, outs [][]byte) {
		for _, o := range outs {
			ok = append(ok, string(o))
		}
	}
	res := inst.InvokeBatch(context.Background(), b)
	for k, want := range []string{"got:a", "got:b", "got:c"} {
		if res[k].Err != nil || string(res[k].Output) != want {
			t.Errorf("event %d: %q %v, want %q", k, res[k].Output, res[k].Err, want)
		}
	}
	if strings.Join(ok, ",") != "got:a,got:b,got:c" {
		t.Errorf("OK got %q", ok)
	}

	res = inst.InvokeBatch(context.Background(), batchOf(time.Time{}, "d", "exit", "e"))
	var pe *proto.Error
	if string(res[0].Output) != "got:d" || !errors.Is(res[1].Err, runtime.ErrInstanceGone) || !strings.Contains(res[1].Err.Error(), "exit status 3") ||
		!errors.As(res[2].Err, &pe) || pe.Type != proto.Skipped {
		t.Errorf("a batch whose process exits: %q/%v, %v, %v", res[0].Output, res[0].Err, res[1].Err, res[2].Err)
	}

	inst = startLines(t, script)
	res = inst.InvokeBatch(context.Background(), batchOf(time.Now().Add(300*time.Millisecond), "f", "sleep", "g"))
	if string(res[0].Output) != "got:f" || !errors.As(res[1].Err, &pe) || pe.Type != proto.Timeout || !errors.As(res[2].Err, &pe) || pe.Type != proto.Skipped {
		t.Errorf("a batch past its deadline: %q/%v, %v, %v", res[0].Output, res[0].Err, res[1].Err, res[2].Err)
	}
}

// startLines starts a lines-mode exec instance running script with sh,
// stopped when the test ends.
func startLines(t *testing.T, script string) runtime.Batcher {
	t.Helper()
	inst, err := runtime.Exec{}.Start(context.Background(), &runtime.Function{Name: "lines", Dir: t.TempDir(), Command: []string{"sh", "-c", script}, ExecMode: runtime.ExecModeLines})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Stop(time.Second) })
	return inst.(runtime.Batcher)
}

// TestExecLinesExitKeepsOutput checks that the lines a process writes
// just before it exits are all read, not lost when it exits: the script
// holds its answers until the event on which it exits, then writes them
// all (more than a pipe holds) and exits, so the last of them are still
// in the pipe, unread, when the process is gone.
func TestExecLinesExitKeepsOutput(t *testing.T) {
	script := `out=; while IFS= read -r l; do [ "$l" = exit ] && { printf %s "$out"; exit 3; }; out="${out}got:$l
"; done`
	// 80 KB of answers, more than the pipe's 64, in short lines: the
	// pool reads a line at a time, so what the pipe holds at the exit
	// takes it thousands of reads.
	in := make([]string, 0, 8000)
	for k := range cap(in) {
		in = append(in, fmt.Sprintf("%05d", k))
	}
	for round := range 3 {
		res := startLines(t, script).InvokeBatch(context.Background(), batchOf(time.Now().Add(30*time.Second), append(in, "exit")...))
		for k := range in {
			if res[k].Err != nil || string(res[k].Output) != "got:"+in[k] {
				t.Fatalf("round %d, event %d of the %d before the exit: %q %v", round, k, len(in), res[k].Output, res[k].Err)
			}
		}
		if !errors.Is(res[len(in)].Err, runtime.ErrInstanceGone) || !strings.Contains(res[len(in)].Err.Error(), "exit status 3") {
			t.Fatalf("round %d: the event on which the process exits: %v, want the instance gone with exit status 3", round, res[len(in)].Err)
		}
	}
}

// TestExecLinesChildHoldsStdout: a process that exits leaving a child
// that holds its stdout open fails the event it exits on at once, as an
// instance failure, not at the batch's deadline.
func TestExecLinesChildHoldsStdout(t *testing.T) {
	inst := startLines(t, `sleep 60 & while IFS= read -r l; do case "$l" in exit) exit 3;; esac; echo "got:$l"; done`)
	// The child is in the process's group.
	t.Cleanup(func() { _ = syscall.Kill(-inst.(interface{ Pid() int }).Pid(), syscall.SIGKILL) })
	res := inst.InvokeBatch(context.Background(), batchOf(time.Now().Add(30*time.Second), "d", "exit"))
	if string(res[0].Output) != "got:d" || !errors.Is(res[1].Err, runtime.ErrInstanceGone) {
		t.Errorf("a process whose child holds its stdout: %q/%v, %v", res[0].Output, res[0].Err, res[1].Err)
	}
}
