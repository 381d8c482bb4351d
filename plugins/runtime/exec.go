package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// Exec runs a function by forking its command once per call: the input on
// stdin, the output from stdout. A non-zero exit is an Exception whose
// message ends with the last line of stderr, and whose detail, for the
// logs, is the tail of stderr. A step's options become flags after the command:
// {e = "x"} adds "-e x", {name = "x"} adds "--name x". A call that came
// from HTTP has the request in its environment (requestEnv); its answer
// is 200 with the output, as in of-watchdog's streaming mode: an exec
// function sets no status or headers.
type Exec struct{}

// Start returns an instance. It runs no process until a call arrives.
func (Exec) Start(ctx context.Context, fn *Function) (Instance, error) {
	if len(fn.Command) == 0 {
		return nil, fmt.Errorf("exec function %s has no command", fn.Name)
	}
	if fn.ExecMode == ExecModeLines {
		return startLines(fn)
	}
	return &execInstance{fn: fn, exited: make(chan struct{})}, nil
}

type execInstance struct {
	fn       *Function
	mu       sync.Mutex
	running  map[int]bool // process groups of calls in flight
	stopped  bool
	exited   chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// stderrTail is how much of a failed command's stderr an error carries.
const stderrTail = 2048

func optionArgs(opts map[string]string) []string {
	names := make([]string, 0, len(opts))
	for k := range opts {
		names = append(names, k)
	}
	sort.Strings(names)
	var args []string
	for _, k := range names {
		if len(k) == 1 {
			args = append(args, "-"+k, opts[k])
		} else {
			args = append(args, "--"+k, opts[k])
		}
	}
	return args
}

func (e *execInstance) Invoke(ctx context.Context, inv *Invocation) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return errGone
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()

	args := append(append([]string{}, e.fn.Command[1:]...), optionArgs(inv.Options)...)
	cmd := exec.Command(e.fn.Command[0], args...)
	cmd.Dir = e.fn.Dir
	env := requestEnv(inv.Meta)
	env["BUTTER_FUNCTION"] = e.fn.Name
	cmd.Env = environ(e.fn, env)
	cmd.Stdin = inv.Input
	cmd.Stdout = inv.Output
	info := callInfo(inv.Meta)
	stderrLog, flushStderr := attributedLines(e.fn.Logs, "stderr", func() CallInfo { return info })
	stderr := &tailBuffer{n: stderrTail, w: stderrLog}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	release, serr := startLimited(cmd, e.fn)
	if serr != nil {
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("start %s: %v", e.fn.Command[0], serr)}
	}
	defer release()
	pgid := cmd.Process.Pid
	e.mu.Lock()
	if e.running == nil {
		e.running = map[int]bool{}
	}
	e.running[pgid] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, pgid)
		e.mu.Unlock()
	}()
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		flushStderr()
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not finish before its deadline", e.fn.Name)}
		}
		return ctx.Err()
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// The last line of stderr is the command's own error message
			// (sed's, a traceback's exception); the rest is for the logs.
			msg := fmt.Sprintf("%s exited with %s", e.fn.Command[0], ee.ProcessState)
			tail := stderr.String()
			if tail != "" {
				msg += ": " + tail[strings.LastIndexByte(tail, '\n')+1:]
			}
			return &proto.Error{Type: proto.Exception, Message: msg, Detail: tail}
		}
		return &proto.Error{Type: proto.Exception, Message: err.Error()}
	}
	return nil
}

// requestEnv is the environment that describes the HTTP request an exec
// call came from (meta ce_httpmethod; none for other events), as
// OpenFaaS's watchdogs set it for a forked process: Http_Method,
// Http_Path, Http_Query (when not empty), Http_ContentLength (when
// known), and Http_<Header> for each header of ce_httpheaders (the
// gateway left out the credentials and the hop-by-hop ones), its
// canonical name with "-" as "_" (X-Custom: Http_X_Custom), a repeated
// header's values joined by ", "; Http_Content_Type is the call's (a
// pipeline step's is the previous step's output's). Butter adds
// BUTTER_HTTP_ROUTE (the route's pattern), BUTTER_HTTP_REMOTE_ADDR,
// BUTTER_REQUEST_ID, BUTTER_TRACEPARENT and BUTTER_PARAM_<name> for each
// path and query parameter (name as the route spells it, lower case).
// Every name has a prefix of its own, so a request cannot set PATH or
// LD_PRELOAD; a value with a NUL byte is left out.
func requestEnv(meta map[string]string) map[string]string {
	env := map[string]string{}
	if meta["ce_httpmethod"] == "" {
		return env
	}
	var hs map[string]string
	_ = json.Unmarshal([]byte(meta["ce_httpheaders"]), &hs)
	for k, v := range hs {
		env["Http_"+strings.ReplaceAll(http.CanonicalHeaderKey(k), "-", "_")] = v
	}
	for k, v := range map[string]string{
		"Http_Method": meta["ce_httpmethod"], "Http_Path": meta["ce_httppath"], "Http_Query": meta["ce_httpquery"],
		"Http_ContentLength": meta["content-length"], "Http_Content_Type": meta["content-type"],
		"BUTTER_HTTP_ROUTE": meta["ce_httproute"], "BUTTER_HTTP_REMOTE_ADDR": meta["ce_httpremoteaddr"],
		"BUTTER_REQUEST_ID": meta["ce_id"], "BUTTER_TRACEPARENT": meta["ce_traceparent"],
	} {
		if v != "" {
			env[k] = v
		}
	}
	for k, v := range meta {
		if name, ok := strings.CutPrefix(k, "param."); ok && name != "" {
			env["BUTTER_PARAM_"+name] = v
		}
	}
	for k, v := range env {
		if strings.IndexByte(v, 0) >= 0 {
			delete(env, k) // a decoded %00 in the path: no environment can hold it
		}
	}
	return env
}

func (e *execInstance) Stop(grace time.Duration) error {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		// Past the grace period, calls still running are killed.
		e.mu.Lock()
		for pgid := range e.running {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		e.mu.Unlock()
		<-done
	}
	e.stopOnce.Do(func() { close(e.exited) })
	return nil
}

func (e *execInstance) Exited() <-chan struct{} { return e.exited }
func (e *execInstance) Pid() int                { return 0 }
