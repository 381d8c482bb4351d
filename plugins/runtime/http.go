package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
// call is proxied to it. A call that came from HTTP is sent as it came
// (method, path, query, headers) and the child's status, headers and
// streamed body are the answer (Invocation.Head), whatever the status.
// Any other event is a POST / with the input as the body; a 2xx answer
// streams back as the output, any other status is an Exception carrying
// the status and the start of the body. The function's timeout bounds
// each call, as of-watchdog's exec_timeout does.
//
// A function whose env sets upstream_url (a template that hard-codes its
// port) is reached there; it cannot run more than one instance per pool:
// set its instances.max to 1.
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
	if u := fn.Env["upstream_url"]; u != "" {
		// The function's env names the port its server listens on, as an
		// OpenFaaS template's Dockerfile does for of-watchdog (python3-http:
		// http://127.0.0.1:5000): one instance per pool, then.
		pu, err := url.Parse(u)
		if err != nil || pu.Port() == "" {
			return nil, fmt.Errorf("http function %s: upstream_url %q is not http://127.0.0.1:<port>", fn.Name, u)
		}
		port, _ = strconv.Atoi(pu.Port())
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
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
			// A redirect is the child's answer, for the caller.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
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
	req, err := i.request(ctx, inv)
	if err != nil {
		return err
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
	if inv.Head != nil {
		// An HTTP call: the child's status and headers are the answer's,
		// whatever the status (of-watchdog's http mode).
		h := proto.HeadMsg{Status: resp.StatusCode, Headers: map[string][]string{}}
		for k, vs := range resp.Header {
			if !hopResponse[k] {
				h.Headers[k] = vs
			}
		}
		inv.Head(h)
	} else if resp.StatusCode/100 != 2 {
		// An event that did not come from HTTP has no status to answer
		// with: a failure status fails it, so that it is retried.
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

// hopResponse are the child's response headers that concern its
// connection to the pool only (RFC 9110 7.6.1) and its framing.
var hopResponse = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// request is the child's request for inv. A call that came from HTTP
// (meta ce_httpmethod) is the original request: its method, path, raw
// query and headers (ce_httpheaders: the gateway left out the
// credentials and the hop-by-hop headers), with the call's Content-Type
// (a pipeline step's is the previous step's), X-Request-Id and trace
// context. Any other event is a POST / whose headers are its metadata.
// Both carry the options as X-Butter-Option-<name>.
func (i *httpInstance) request(ctx context.Context, inv *Invocation) (*http.Request, error) {
	m := inv.Meta
	method, target := http.MethodPost, i.upstream+"/"
	if v := m["ce_httpmethod"]; v != "" {
		method, target = v, i.upstream+m["ce_httppath"]
		if !strings.HasPrefix(m["ce_httppath"], "/") {
			target = i.upstream + "/" + m["ce_httppath"]
		}
		if q := m["ce_httpquery"]; q != "" {
			target += "?" + q
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, target, inv.Input)
	if err != nil {
		return nil, fmt.Errorf("http function %s: request: %w", i.fn.Name, err)
	}
	if m["ce_httpmethod"] != "" {
		var hs map[string]string
		_ = json.Unmarshal([]byte(m["ce_httpheaders"]), &hs)
		for k, v := range hs {
			switch k {
			case "content-length", "host", "expect":
			default:
				req.Header.Set(k, v)
			}
		}
		for k, v := range map[string]string{"Content-Type": m["content-type"], "X-Request-Id": m["ce_id"],
			"traceparent": m["traceparent"], "tracestate": m["tracestate"]} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if host, _, err := net.SplitHostPort(m["ce_httpremoteaddr"]); err == nil && req.Header.Get("X-Forwarded-For") == "" {
			req.Header.Set("X-Forwarded-For", host)
		}
	} else {
		for k, v := range m {
			if k != "content-length" && !strings.HasPrefix(k, "param.") {
				req.Header.Set(k, v)
			}
		}
	}
	if v, ok := m["content-length"]; ok {
		// A known length goes through as Content-Length: OpenFaaS
		// handlers (and Python's http.server) do not read chunked bodies.
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			req.ContentLength = n
			if n == 0 {
				req.Body = http.NoBody
			}
		}
	}
	for k, v := range inv.Options {
		req.Header.Set("X-Butter-Option-"+k, v)
	}
	return req, nil
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
