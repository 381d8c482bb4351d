package pool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
)

// A function the pool cannot start is failed on its own: its calls are
// answered at once with an Unavailable error naming the reason, the pool's
// health check (GET /v1/health) fails naming it, and the
// butter_function_failed gauge is 1 for it; its neighbours serve as
// before. The pool keeps retrying its start, at most every minRetry, so a
// cause that goes away (a file fixed, a limit lifted) heals it.
//
// Start loads every function before the pool serves (a preflight): it
// starts one instance even of a function whose min is 0, and stops it
// again, so that a revision whose handler cannot load (an import error, a
// missing binary, a runtime this pool lacks) is seen failed before it
// takes traffic. `butter dev` keeps the previous revision serving when
// Start fails; under Nomad, the failing health check fails the deployment.

// Unavailable is the error type of a call to a function that cannot start
// an instance (HTTP 503). The message gives the cause in one line; the
// whole error, with the worker's stderr, goes to the pool's log.
const Unavailable = "Unavailable"

// LoadError is what Start returns when functions could not start: each
// failed function with its error, which carries the worker's stderr tail
// where there is one. The pool runs on, serving the other functions.
type LoadError struct {
	// Functions maps each failed function to its start error.
	Functions map[string]error
}

// Names lists the failed functions, sorted.
func (e *LoadError) Names() []string {
	names := make([]string, 0, len(e.Functions))
	for n := range e.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (e *LoadError) Error() string {
	parts := make([]string, 0, len(e.Functions))
	for _, n := range e.Names() {
		parts = append(parts, fmt.Sprintf("function %s: %v", n, e.Functions[n]))
	}
	return strings.Join(parts, "; ")
}

// failedRuntime stands for a runtime the pool cannot provide (runtime.For
// refused it): every start fails with why, so only that function fails.
type failedRuntime struct{ err error }

func (r failedRuntime) Start(context.Context, *runtime.Function) (runtime.Instance, error) {
	return nil, r.err
}

// unavailable is the error a call gets when the function cannot start an
// instance: the cause in one line, without the worker's stderr (it may
// hold server paths and tracebacks, which are for the log).
func (f *fnPool) unavailable(err error) error {
	// The caller gets the summary; the log gets the whole error, the
	// worker's output with it, as the detail (errors.go).
	return &proto.Error{Type: Unavailable, Message: fmt.Sprintf("function %s cannot start an instance: %s", f.cfg.Name, Summary(err)), Detail: err.Error()}
}

// Summary is a start error in one line for a caller, without the
// worker's stderr (tracebacks, stacks and the server's paths are for the
// log): the last exception it names, such as "ModuleNotFoundError: No
// module named 'humanize'" or Node's "Error: Cannot find module 'x'",
// else its first line.
func Summary(err error) string {
	if err == nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if m := exceptionLine.FindStringSubmatch(lines[i]); m != nil {
			return strings.TrimSpace(m[1])
		}
	}
	return lines[0]
}

// exceptionLine finds an exception and its message in a line of a
// worker's stderr: a name ending in Error or Exception, at the start of
// the line or after a blank or a colon, then ": " and the message.
var exceptionLine = regexp.MustCompile(`(?:^|[\s:])((?:[A-Z][\w.]*)?(?:Error|Exception): .*)$`)

// preflight loads the function before the pool serves: with min = 0 it
// starts one instance and stops it again, keeping scale to zero; with a
// min, the minimum instances that Start starts are the check.
func (f *fnPool) preflight(ctx context.Context) error {
	s, err := f.startInstance(ctx, false)
	if err != nil {
		return err
	}
	f.mu.Lock()
	retire := f.cfg.MinInstances == 0 && s.inflight == 0 && !s.dead
	if retire {
		s.dead = true
		f.remove(s)
	}
	f.mu.Unlock()
	if retire {
		_ = s.inst.Stop(time.Second)
	}
	return nil
}

// checkCommand finds an exec function's command, which its runtime only
// runs at a call: a missing binary fails the start, not every call. A
// bare name is looked up in PATH, as exec.Command does; a path is taken
// relative to the bundle.
func checkCommand(fn *runtime.Function) error {
	if len(fn.Command) == 0 {
		return nil // the runtime refuses it itself
	}
	name := fn.Command[0]
	if !strings.Contains(name, "/") {
		_, err := exec.LookPath(name)
		return err
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(fn.Dir, path)
	}
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("command %q: %w", name, err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return fmt.Errorf("command %q: %s is not an executable file", name, path)
	}
	return nil
}
