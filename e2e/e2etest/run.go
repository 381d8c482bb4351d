package e2etest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// Result is what a butter command printed and its exit status.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Butter runs the butter binary in dir with args, as a user does from a
// shell, and returns what it printed and its exit status. It fails the
// test if the process cannot run at all.
func Butter(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(Bin(), args...)
	cmd.Dir = dir
	return Run(t, cmd)
}

// Run runs cmd, a butter command set up by the caller (its environment,
// its standard input), and returns what it printed and its exit status.
// It fails the test if the process cannot run at all.
func Run(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%v: %v\nstderr:\n%s", cmd.Args, err, se.String())
		}
		code = ee.ExitCode()
	}
	return Result{so.String(), se.String(), code}
}

// WaitFor polls cond every 50ms until it holds, and fails the test if it
// does not within d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true after %s", what, d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Tail returns the last n bytes of s, for logs of a failed test.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
