package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// HTTP runs a function as a child HTTP server, following the conventions
// of OpenFaaS of-watchdog's http mode, so that existing OpenFaaS-style
// handlers run unchanged: each instance's command gets a free port in
// $http_port (and $port), the upstream address in $upstream_url, and each
// call is proxied to it as a POST with the input as the body. A 2xx answer
// streams back as the output; any other status is an Exception carrying
// the status and the start of the body.
//
// Templates that hard-code their port cannot run more than one instance
// per pool; set their function's instances.max to 1.
type HTTP struct {
	// StartTimeout bounds the time until the server accepts connections.
	// Zero means 30s.
	StartTimeout time.Duration
}

// Start starts the server and waits until it accepts connections.
func (h HTTP) Start(ctx context.Context, fn *Function) (Instance, error) {
	if len(fn.Command) == 0 {
		return nil, fmt.Errorf("http function %s has no command", fn.Name)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("http function %s: %w", fn.Name, err)
	}
	upstream := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(fn.Command[0], fn.Command[1:]...)
	cmd.Dir = fn.Dir
	cmd.Env = environ(fn, map[string]string{
		"BUTTER_FUNCTION": fn.Name,
		"http_port":       strconv.Itoa(port),
		"port":            strconv.Itoa(port),
		"upstream_url":    upstream,
	})
	stdoutLog, flushStdout := logLines(fn.Logs)
	stderrLog, flushStderr := logLines(fn.Logs)
	stderr := &tailBuffer{n: stderrTail, w: stderrLog}
	cmd.Stdout = stdoutLog
	cmd.Stderr = stderr
	release, err := startLimited(cmd, fn)
	if err != nil {
		return nil, fmt.Errorf("start http function %s: %w", fn.Name, err)
	}
	inst := &httpInstance{fn: fn, cmd: cmd, upstream: upstream, exited: make(chan struct{}), stderr: stderr,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}}
	go func() {
		inst.waitErr = cmd.Wait()
		flushStdout()
		flushStderr()
		release()
		close(inst.exited)
	}()
	timeout := h.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return inst, nil
		}
		select {
		case <-inst.exited:
			return nil, &OutputError{Err: fmt.Errorf("http function %s exited before it listened on $http_port (%d): %v", fn.Name, port, inst.waitErr), Output: stderr.String()}
		case <-ctx.Done():
			inst.kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			inst.kill()
			return nil, &OutputError{Err: fmt.Errorf("http function %s did not listen on $http_port (%d) within %s", fn.Name, port, timeout), Output: stderr.String()}
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type httpInstance struct {
	fn       *Function
	cmd      *exec.Cmd
	upstream string
	client   *http.Client
	stderr   *tailBuffer
	waitErr  error
	exited   chan struct{}
}

func (i *httpInstance) Pid() int                { return i.cmd.Process.Pid }
func (i *httpInstance) Exited() <-chan struct{} { return i.exited }
func (i *httpInstance) kill()                   { _ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL) }

func (i *httpInstance) Invoke(ctx context.Context, inv *Invocation) error {
	select {
	case <-i.exited:
		return errGone
	default:
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.upstream+"/", inv.Input)
	if err != nil {
		return err
	}
	for k, v := range inv.Meta {
		switch {
		case k == "content-length":
			// A known length goes through as Content-Length: OpenFaaS
			// handlers (and Python's http.server) do not read chunked bodies.
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				req.ContentLength = n
				if n == 0 {
					req.Body = http.NoBody
				}
			}
		case !strings.HasPrefix(k, "param."):
			req.Header.Set(k, v)
		}
	}
	for k, v := range inv.Options {
		req.Header.Set("X-Butter-Option-"+k, v)
	}
	resp, err := i.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not answer before its deadline", i.fn.Name)}
		}
		select {
		case <-i.exited:
			return &OutputError{Err: fmt.Errorf("%w: http function %s exited (%v)", ErrInstanceGone, i.fn.Name, i.waitErr), Output: i.stderr.String()}
		default:
		}
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("%s: %v", i.fn.Name, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, stderrTail))
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("%s answered %s: %s", i.fn.Name, resp.Status, strings.TrimSpace(string(b)))}
	}
	if _, err := io.Copy(inv.Output, resp.Body); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s did not finish before its deadline", i.fn.Name)}
		}
		return fmt.Errorf("stream the answer of %s: %w", i.fn.Name, err)
	}
	return nil
}

// Stop sends SIGTERM, as of-watchdog does, and kills after grace.
func (i *httpInstance) Stop(grace time.Duration) error {
	_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-i.exited:
	case <-time.After(grace):
		i.kill()
		<-i.exited
	}
	i.client.CloseIdleConnections()
	return nil
}
