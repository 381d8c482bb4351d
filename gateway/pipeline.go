package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butterfn/butter/pipeline"
)

// maxWholeInput is the longest request body, declared by its
// Content-Length, that the gateway reads whole before calling the first
// step; longer or chunked bodies stream.
const maxWholeInput = 32 << 10

// chain is one call of a function or a pipeline in direct mode.
//
// Steps start in order: step i+1 is called once step i has answered
// 200, which a pool does on the function's first output byte (held up to
// 2 ms, plugins/pool/http.go), and its request body is step i's response
// body, streamed. A step that fails before its output starts is never
// followed by the next, so no function runs on the input of a step that
// failed. A step that fails after its output started cuts the next step's
// input short (its connection is closed) and the chain reports the first
// failure.
type chain struct {
	g           *Gateway
	project     string
	steps       []step
	base        http.Header // sent to every step
	contentType string
	in          *inputBody
	length      int64
	deadline    time.Time // zero: none

	mu     sync.Mutex
	failed *CallError
	resps  []*http.Response
}

// run calls the steps and returns the last one's response, status 200,
// whose body the caller streams; or a *CallError.
func (c *chain) run(ctx context.Context) (*http.Response, error) {
	var in io.Reader = c.in
	length, ctype := c.length, c.contentType
	if length > 0 && length <= maxWholeInput {
		// A small body the client declared whole is read whole: the
		// transport then sends the request to the pool in one write,
		// instead of flushing its headers before a body it cannot see.
		b := make([]byte, length)
		if _, err := io.ReadFull(c.in, b); err != nil {
			if f := c.rootCause(); f != nil {
				return nil, f
			}
			return nil, callError(http.StatusBadRequest, "BadRequest", "reading the request body failed: %v", err)
		}
		in = bytes.NewReader(b)
	}
	for i, s := range c.steps {
		hdr := c.base.Clone()
		if ctype != "" {
			hdr.Set("Content-Type", ctype)
		}
		for k, v := range s.Options {
			hdr.Set(names.HeaderOptionPrefix+k, v)
		}
		if !c.deadline.IsZero() {
			hdr.Set(names.HeaderTimeout, timeoutHeader(c.deadline))
		}
		resp, err := c.g.callStep(ctx, c.project, s, hdr, in, length)
		if err != nil {
			return nil, c.classify(ctx, i, err)
		}
		c.mu.Lock()
		c.resps = append(c.resps, resp)
		c.mu.Unlock()
		handlerStatus := resp.Header.Get(names.HeaderStatus) != ""
		if resp.StatusCode != http.StatusOK && !handlerStatus {
			if f := c.rootCause(); f != nil {
				return nil, f
			}
			ce := readPoolError(resp)
			ce.Step = i
			return nil, ce
		}
		if i == len(c.steps)-1 || resp.StatusCode >= 400 {
			// The last step, or one whose handler answered an error
			// status of its own: that answer is the caller's, and the
			// steps after it do not run (docs/gateway.md, "Pipelines").
			return resp, nil
		}
		in = &stepOutput{c: c, i: i, ctx: ctx, resp: resp}
		length, ctype = -1, resp.Header.Get("Content-Type")
	}
	panic("unreachable: a chain has at least one step")
}

// head puts on h the headers of the caller's answer, whose body is last's,
// and returns its status (docs/gateway.md, "Pipelines"): the status the
// last step whose handler set one (names.HeaderStatus) set, else 200; the
// headers of every step whose handler set a head, a later step's value of
// a header replacing an earlier one's, and last's headers over them.
func (c *chain) head(h http.Header, last *http.Response) int {
	c.mu.Lock()
	resps := append([]*http.Response(nil), c.resps...)
	c.mu.Unlock()
	status := http.StatusOK
	for _, r := range resps {
		v := r.Header.Get(names.HeaderStatus)
		if v == "" {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			status = n // 0: the handler set headers only
		}
		if r != last {
			copyHeader(h, r.Header)
		}
	}
	copyHeader(h, last.Header)
	h.Del(names.HeaderStatus)
	return status
}

// close ends every step's response; closing a step still streaming
// cancels its call.
func (c *chain) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.resps) - 1; i >= 0; i-- {
		_ = c.resps[i].Body.Close()
	}
	c.resps = nil
}

func (c *chain) fail(e *CallError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = e
	}
}

// rootCause is the failure that explains the others: the client's body
// (too large, or broken), else the first step that failed midway.
func (c *chain) rootCause() *CallError {
	if e := c.in.failure(); e != nil {
		return e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// failure says whether the call failed, once the last step's body was
// read to readErr.
func (c *chain) failure(ctx context.Context, readErr error) *CallError {
	if f := c.rootCause(); f != nil {
		return f
	}
	if readErr == nil {
		return nil
	}
	return c.midway(ctx, len(c.steps)-1, readErr)
}

// midway classifies a step's output that broke off.
func (c *chain) midway(ctx context.Context, i int, err error) *CallError {
	var ce *CallError
	if errors.As(err, &ce) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e := *ce // an external step's own timeout (externalBody)
		e.Step = i
		return &e
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e := callError(http.StatusGatewayTimeout, "Timeout", "the route's deadline passed while %s was streaming its output", c.steps[i].Function)
		e.Step = i
		return e
	}
	e := callError(http.StatusBadGateway, "InstanceFailed", "the output of %s broke off: %v", c.steps[i].Function, err)
	e.Step = i
	return e
}

// classify turns a failed forward of step i into a CallError.
func (c *chain) classify(ctx context.Context, i int, err error) *CallError {
	if f := c.rootCause(); f != nil {
		return f
	}
	var ce *CallError
	if errors.As(err, &ce) {
		ce.Step = i
		return ce
	}
	s := c.steps[i]
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		ce = callError(http.StatusGatewayTimeout, "Timeout", "the route's deadline passed before %s answered", s.Function)
	case errors.Is(ctx.Err(), context.Canceled):
		ce = callError(http.StatusBadGateway, "Canceled", "the call to %s was cancelled: the client went away", s.Function)
	default:
		ce = callError(http.StatusBadGateway, "InstanceFailed", "the call to %s on pool %q failed after it was sent (not retried): %v", s.Function, s.pool, err)
	}
	ce.Step = i
	return ce
}

// describe prefixes a pipeline step's failure with the step.
func (c *chain) describe(e *CallError) string {
	if len(c.steps) < 2 || e.Step < 0 || e.Step >= len(c.steps) {
		return e.Message
	}
	return fmt.Sprintf("step %d of %d (%s): %s", e.Step+1, len(c.steps), c.steps[e.Step].Function, e.Message)
}

// stepOutput is a step's output read as the next step's input. A failure
// the pool reports in its Butter-Error trailer becomes a read error, so
// the next step's input is cut short instead of ending cleanly.
type stepOutput struct {
	c    *chain
	i    int
	ctx  context.Context
	resp *http.Response
}

func (o *stepOutput) Read(p []byte) (int, error) {
	n, err := o.resp.Body.Read(p)
	switch {
	case err == io.EOF:
		if t := o.resp.Trailer.Get(names.HeaderError); t != "" {
			e := trailerError(t)
			e.Step = o.i
			o.c.fail(e)
			return n, e
		}
	case err != nil:
		e := o.c.midway(o.ctx, o.i, err)
		o.c.fail(e)
		return n, e
	}
	return n, err
}

// trailerError reads a pool's Butter-Error trailer, "Type: message".
func trailerError(t string) *CallError {
	typ, msg, ok := strings.Cut(t, ": ")
	if !ok {
		typ, msg = "Exception", t
	}
	return &CallError{Status: statusOf(typ), Type: typ, Message: poolMessage(msg), Step: -1}
}

// readPoolError reads a pool's error answer, {"error": {"type",
// "message"}, "details": [...]}, keeping its status and details.
func readPoolError(resp *http.Response) *CallError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var pe struct {
		Error   struct{ Type, Message string }
		Details json.RawMessage
	}
	if json.Unmarshal(b, &pe) == nil && pe.Error.Type != "" {
		return &CallError{Status: resp.StatusCode, Type: pe.Error.Type, Message: poolMessage(pe.Error.Message), Step: -1, Details: pe.Details}
	}
	msg := poolMessage(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &CallError{Status: resp.StatusCode, Type: typeOf(resp.StatusCode), Message: msg, Step: -1}
}

// inputBody is the client's request body: it enforces the route's size
// limit and remembers why reading it failed.
type inputBody struct {
	r     io.Reader
	limit int64 // 0: none
	n     int64

	mu  sync.Mutex
	err *CallError
}

func (b *inputBody) Read(p []byte) (int, error) {
	if e := b.failure(); e != nil {
		return 0, e
	}
	// Read at most one byte past the limit: enough to know it was passed.
	if b.limit > 0 && int64(len(p)) > b.limit-b.n+1 {
		p = p[:b.limit-b.n+1]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.limit > 0 && b.n > b.limit {
		e := callError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "the request body is larger than this route's limit of %d bytes (max_body)", b.limit)
		b.set(e)
		return n - int(b.n-b.limit), e
	}
	if err != nil && err != io.EOF {
		b.set(callError(http.StatusBadRequest, "BadRequest", "reading the request body failed: %v", err))
	}
	return n, err
}

func (b *inputBody) set(e *CallError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = e
	}
}

func (b *inputBody) failure() *CallError {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Invoke runs steps, each "name" or "name key=value ...", as a pipeline
// of project's functions in direct mode: body is the first step's input,
// and the last step's output is written to out as it streams. ctx bounds
// the call; its deadline reaches the pools as Butter-Timeout.
//
// It returns nil when every step succeeded, else a *CallError with the
// status the HTTP endpoint would answer. An error that came after the
// output started leaves part of the output in out.
func (g *Gateway) Invoke(ctx context.Context, project string, steps []string, body io.Reader, out io.Writer) error {
	parsed, err := g.adHocSteps(project, steps)
	if err != nil {
		return callError(http.StatusBadRequest, "BadRequest", "%v", err)
	}
	if body == nil {
		body = http.NoBody
	}
	base := http.Header{}
	base.Set(HeaderRequestID, newID())
	injectTrace(nil, base)
	c := &chain{g: g, project: project, steps: parsed, base: base, in: &inputBody{r: body}, length: -1}
	if d, ok := ctx.Deadline(); ok {
		c.deadline = d
	}
	resp, err := c.run(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	var readErr error
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return callError(http.StatusBadGateway, "OutputFailed", "writing the output failed: %v", werr)
			}
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	if f := c.failure(ctx, readErr); f != nil {
		return f
	}
	if t := resp.Trailer.Get(names.HeaderError); t != "" {
		e := trailerError(t)
		e.Step = len(parsed) - 1
		return e
	}
	return nil
}

// adHocSteps parses the steps of an ad-hoc pipeline, each "name k=v
// ...", and finds each function's pool.
func (g *Gateway) adHocSteps(project string, steps []string) ([]step, error) {
	if len(steps) == 0 {
		return nil, errors.New("no steps: name at least one function")
	}
	parsed := make([]pipeline.Step, len(steps))
	for i, raw := range steps {
		s, err := pipeline.ParseStep(raw)
		if err != nil {
			return nil, err
		}
		parsed[i] = s
	}
	return g.place(project, parsed), nil
}

// place finds the pool of each step's function.
func (g *Gateway) place(project string, steps []pipeline.Step) []step {
	t := g.table.Load()
	out := make([]step, len(steps))
	for i, s := range steps {
		out[i] = step{Step: s, pool: g.poolOf(t, project, s.Function)}
	}
	return out
}

// poolOf finds the pool hosting a function: WithPlacement's answer, else
// a route's, else DefaultPool.
func (g *Gateway) poolOf(t *table, project, function string) string {
	if g.opts.placement != nil {
		if p, ok := g.opts.placement(project, function); ok && p != "" {
			return p
		}
	}
	for _, r := range t.routes {
		if r.Project != project {
			continue
		}
		for _, s := range r.steps {
			if s.Function == function {
				return s.pool
			}
		}
	}
	return DefaultPool
}

// serveAdHoc serves POST /v1/invoke/{project}: the steps come from the
// Butter-Pipeline header or, for convenience, the pipeline query
// parameter; the body is the first step's input.
func (g *Gateway) serveAdHoc(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	spec := r.Header.Get(names.HeaderPipeline)
	if q := r.URL.Query().Get("pipeline"); q != "" {
		if spec != "" && spec != q {
			id := requestID(r)
			w.Header().Set(HeaderRequestID, id)
			writeError(w, http.StatusBadRequest, "BadRequest", id, "the Butter-Pipeline header and the pipeline parameter differ: send one")
			return
		}
		spec = q
	}
	rt := &route{
		Route:   Route{Method: http.MethodPost, Path: names.GatewayInvokePath, Project: project, Auth: g.opts.invokeAuth, Mode: ModeDirect},
		pattern: names.GatewayInvokePattern,
		adhoc:   true,
	}
	steps, err := pipeline.Parse(spec)
	if err == nil {
		rt.steps = g.place(project, steps)
		rt.Pipeline = make([]string, len(steps))
		for i, s := range steps {
			rt.Pipeline[i] = s.String()
		}
	}
	if spec == "" {
		err = errors.New("name the steps in a Butter-Pipeline header (or ?pipeline=): `sed e=s/a/b/ | to-upper`")
	}
	if err != nil {
		id := requestID(r)
		w.Header().Set(HeaderRequestID, id)
		writeError(w, http.StatusBadRequest, "BadRequest", id, "pipeline: "+err.Error())
		g.metrics.observe(rt.pattern, http.StatusBadRequest, 0)
		return
	}
	g.serveRoute(w, r, rt)
}
