package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
)

// External steps. A route's pipeline may hold an external HTTP function,
// written as its URL ("http://gateway.openfaas:8080/function/figlet"),
// optionally followed by its timeout ("http://... timeout=10s"), so that
// an existing OpenFaaS function, or any HTTP endpoint that answers a POST
// with its output, sits in a Butter pipeline. The gateway POSTs the
// step's input to the URL, streamed as to a pool, and streams the answer
// on to the next step (or the client), under the route's deadline and
// the step's own timeout.
//
// Only routes carry external steps: ad-hoc pipelines (POST
// /v1/invoke/{project}) read package pipeline's grammar, which names
// functions only, so a caller cannot make the gateway call a URL of its
// choosing.
//
// What an external step gets: the input as the body, Content-Type of
// that input, X-Request-Id, the trace context (traceparent), Accept, the
// route's parameters (Butter-Param-*), the CloudEvents ce-* headers and
// Butter-Timeout, the time left before the step's timeout or the route's
// deadline, whichever is sooner. Never the client's credentials. Any 2xx
// answer is its output, its status and headers the step's head as a
// pool's handler sets one (chain.head); any other status fails the call
// with 502 ExternalFailed, quoting the start of the answer; a step past
// its timeout fails with 504 Timeout.

// isExternal says whether a route's step is an external step's URL.
func isExternal(text string) bool {
	return strings.HasPrefix(text, "http://") || strings.HasPrefix(text, "https://")
}

// externalStep reads an external step, "URL" or "URL timeout=10s", with
// package spec's rule for its URL.
func externalStep(text string) (step, error) {
	raw, rest, _ := strings.Cut(text, " ")
	if msg := spec.CheckStepURL(raw); msg != "" {
		return step{}, fmt.Errorf("external step %q: %s", raw, msg)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return step{}, fmt.Errorf("external step %q: %w", raw, err)
	}
	s := step{url: u}
	s.Function = raw
	for _, opt := range strings.Fields(rest) {
		k, v, _ := strings.Cut(opt, "=")
		if k != "timeout" {
			return step{}, fmt.Errorf("external step %q: %q is not an option of external steps: only timeout=<duration> follows the URL", raw, opt)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return step{}, fmt.Errorf("external step %q: timeout %q: use a positive duration such as 10s", raw, v)
		}
		s.timeout = d
	}
	return s, nil
}

// callStep calls one step: a function through its pool (forward), or an
// external step.
func (g *Gateway) callStep(ctx context.Context, project string, s step, hdr http.Header, body io.Reader, length int64) (*http.Response, error) {
	if s.url == nil {
		return g.forward(ctx, project, s, hdr, body, length)
	}
	return g.forwardExternal(ctx, s, hdr, body, length)
}

// forwardExternal POSTs a step's input to an external step and returns
// its answer once its headers arrive, the body still streaming both
// ways. The step's timeout, when set, bounds the call to the end of its
// answer's body. It is not retried: the function may have run.
func (g *Gateway) forwardExternal(ctx context.Context, s step, hdr http.Header, body io.Reader, length int64) (*http.Response, error) {
	parent := ctx
	cancel := context.CancelFunc(func() {})
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		d, _ := ctx.Deadline()
		hdr.Set(names.HeaderTimeout, timeoutHeader(d))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url.String(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header = hdr
	if length == 0 || body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	} else {
		req.Body, req.ContentLength = io.NopCloser(body), length
	}
	resp, err := g.transport.RoundTrip(req)
	if err != nil {
		cancel()
		switch {
		case parent.Err() != nil:
			return nil, err // the route's deadline or the client: classify says which
		case ctx.Err() != nil:
			return nil, callError(http.StatusGatewayTimeout, "Timeout", "external step %s did not answer within its timeout of %s", s.Function, s.timeout)
		case isDialError(err):
			return nil, callError(http.StatusBadGateway, "ExternalFailed", "could not connect to external step %s: %v", s.Function, err)
		}
		return nil, callError(http.StatusBadGateway, "ExternalFailed", "the call to external step %s failed after it was sent (not retried): %v", s.Function, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		cancel()
		msg := strings.TrimSpace(string(b))
		if !utf8.ValidString(msg) {
			msg = fmt.Sprintf("%d bytes, not text", len(b))
		}
		if msg == "" {
			msg = "no body"
		}
		return nil, callError(http.StatusBadGateway, "ExternalFailed", "external step %s answered %s: %s", s.Function, resp.Status, msg)
	}
	// Its status and headers are the step's head, as a pool marks the
	// head a handler set; but none of Butter's own, and no error trailer
	// that would pass for a Butter failure.
	for k := range resp.Header {
		if strings.HasPrefix(k, "Butter-") {
			delete(resp.Header, k)
		}
	}
	resp.Header.Set(names.HeaderStatus, strconv.Itoa(resp.StatusCode))
	resp.Trailer.Del(names.HeaderError)
	resp.Body = &externalBody{ReadCloser: resp.Body, step: s, ctx: ctx, parent: parent, cancel: cancel}
	return resp, nil
}

// externalBody is an external step's answer body: a read cut by the
// step's own timeout fails as Timeout, and Close ends the step's context.
type externalBody struct {
	io.ReadCloser
	step   step
	ctx    context.Context
	parent context.Context
	cancel context.CancelFunc
}

func (b *externalBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && errors.Is(b.ctx.Err(), context.DeadlineExceeded) && b.parent.Err() == nil {
		err = callError(http.StatusGatewayTimeout, "Timeout", "external step %s was still streaming its output at its timeout of %s", b.step.Function, b.step.timeout)
	}
	return n, err
}

func (b *externalBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
