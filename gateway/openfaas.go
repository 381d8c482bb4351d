package gateway

// OpenFaaS's gateway API, for users and tools (faas-cli, OpenFaaS
// clients) that already speak it; off unless WithOpenFaaS. It serves
//
//	ANY  /function/{name}[/path]        a synchronous call, in direct mode
//	POST /async-function/{name}[/path]  202 Accepted, then the result
//	                                    POSTed to X-Callback-Url
//	GET  /system/functions              the deployed functions
//
// where {name} is "<function>.<project>" (OpenFaaS's "name.namespace"),
// or a bare "<function>" of OpenFaaS.DefaultProject. docs/gateway.md
// states the contract.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/pipeline"
)

// OpenFaaS configures the OpenFaaS gateway API (WithOpenFaaS).
type OpenFaaS struct {
	// DefaultProject is the project of a function called by its bare
	// name (/function/echo). Without it, a name must be
	// "<function>.<project>".
	DefaultProject string
	// Auth is "api_key" (the default): every call needs an API key of
	// the function's project with no route restrictions, sent as the
	// password of HTTP basic auth (any user name, faas-cli's "admin"
	// included), as "Authorization: Bearer <key>" or as X-API-Key; GET
	// /system/functions lists the key's project only. "none" opens
	// every function of every project, for `butter dev` only.
	Auth string
	// AsyncTimeout bounds an async call, from its acceptance to its
	// result. The default is WithQueuedTimeout's.
	AsyncTimeout time.Duration
	// CallbackClient posts the results of async calls to their
	// X-Callback-Url. The default times out after 10s and follows no
	// redirect.
	CallbackClient *http.Client
}

// FunctionInfo is a deployed function, as GET /system/functions lists it
// and as the OpenFaaS API finds the functions it may call (WithFunctions).
type FunctionInfo struct {
	Project, Name, Revision string
	// Runtime and Process (the handler, or an exec or http function's
	// command) become OpenFaaS's image and envProcess.
	Runtime, Process string
	// Pool hosts the function; "" is DefaultPool.
	Pool string
	// Secrets are the names of the secrets the function declares (never
	// their values).
	Secrets []string
	// Labels and Annotations are listed as given.
	Labels, Annotations map[string]string
}

// WithOpenFaaS turns on OpenFaaS's gateway API (see OpenFaaS). While it is
// on, /function/, /async-function/ and /system/ are the gateway's own
// paths: SetRoutes refuses a route there, or one ServeMux cannot route
// apart from them. Off by default: those paths are then free for routes,
// and answer 404 when no route takes them.
func WithOpenFaaS(cfg OpenFaaS) Option {
	return func(o *options) { o.openfaas = &cfg }
}

// WithFunctions tells the OpenFaaS API which functions are deployed: it
// calls f on every request it serves, so f must be cheap. Without it,
// the functions are those the route table calls (a function without a
// route is then unknown: 404).
func WithFunctions(f func() []FunctionInfo) Option {
	return func(o *options) { o.functions = f }
}

// openFaaS serves the OpenFaaS API of one gateway.
type openFaaS struct {
	g        *Gateway
	cfg      OpenFaaS
	callback *http.Client
	counts   sync.Map // project "/" function → *atomic.Int64, the calls this gateway made
}

func newOpenFaaS(g *Gateway, cfg OpenFaaS) *openFaaS {
	if cfg.Auth == "" {
		cfg.Auth = AuthAPIKey
	}
	if cfg.AsyncTimeout <= 0 {
		cfg.AsyncTimeout = g.opts.queuedTimeout
	}
	cb := cfg.CallbackClient
	if cb == nil {
		cb = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &openFaaS{g: g, cfg: cfg, callback: cb}
}

// count records a call of a project's function that reached a pool.
func (f *openFaaS) count(project, function string) {
	k := project + "/" + function
	c, ok := f.counts.Load(k)
	if !ok {
		c, _ = f.counts.LoadOrStore(k, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

func (f *openFaaS) invocations(project, function string) int64 {
	if c, ok := f.counts.Load(project + "/" + function); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// check refuses routes on OpenFaaS's paths, which the gateway serves
// itself while the API is on. Routes that ServeMux cannot tell apart from
// its patterns are refused when the table is built.
func (f *openFaaS) check(routes []*route) error {
	var errs []error
	for _, r := range routes {
		if names.OpenFaaSPath(r.Path) {
			errs = append(errs, fmt.Errorf("route %q of project %q is on a path of the OpenFaaS API, which this gateway serves itself (%s, %s and %s): route it under a path of your own, or run the gateway without -openfaas",
				r.pattern, r.Project, names.OpenFaaSFunctionPrefix, names.OpenFaaSAsyncPrefix, names.OpenFaaSSystemPrefix))
		}
	}
	return errors.Join(errs...)
}

// register adds the API's patterns to a table's mux.
func (f *openFaaS) register(mux *http.ServeMux) {
	mux.HandleFunc(names.OpenFaaSFunctionPrefix+"{name}", f.serveSync)
	mux.HandleFunc(names.OpenFaaSFunctionPrefix+"{name}/{path...}", f.serveSync)
	mux.HandleFunc(http.MethodPost+" "+names.OpenFaaSAsyncPrefix+"{name}", f.serveAsync)
	mux.HandleFunc(http.MethodPost+" "+names.OpenFaaSAsyncPrefix+"{name}/{path...}", f.serveAsync)
	mux.HandleFunc(http.MethodGet+" "+names.OpenFaaSFunctionsPath, f.serveList)
}

// functions lists the deployed functions: WithFunctions's, else those
// the route table calls.
func (f *openFaaS) functions() []FunctionInfo {
	if f.g.opts.functions != nil {
		return f.g.opts.functions()
	}
	seen := map[string]bool{}
	var out []FunctionInfo
	for _, r := range f.g.table.Load().routes {
		for _, s := range r.steps {
			if k := r.Project + "/" + s.Function; !seen[k] {
				seen[k] = true
				out = append(out, FunctionInfo{Project: r.Project, Name: s.Function, Revision: r.Revision, Pool: s.pool})
			}
		}
	}
	return out
}

// target is the function an OpenFaaS request names.
type target struct {
	name string // as the client wrote it
	fn   FunctionInfo
}

// resolve finds the function {name} names and checks the request's
// credentials for its project: 401, 403 or 404 as a *CallError.
func (f *openFaaS) resolve(r *http.Request) (target, *CallError) {
	name := r.PathValue("name")
	function, project, dotted := strings.Cut(name, ".")
	if !dotted {
		project = f.cfg.DefaultProject
	}
	if project == "" {
		return target{}, callError(http.StatusNotFound, "NotFound", "function %q: name it <function>.<project>, as OpenFaaS names <function>.<namespace> (this gateway has no default project)", name)
	}
	if e := f.authorize(r, project); e != nil {
		return target{}, e
	}
	for _, fn := range f.functions() {
		if fn.Project == project && fn.Name == function {
			if fn.Pool == "" {
				fn.Pool = f.g.poolOf(f.g.table.Load(), project, function)
			}
			return target{name: name, fn: fn}, nil
		}
	}
	return target{}, callError(http.StatusNotFound, "NotFound", "no function %s in project %s's active revision (GET %s lists them)", function, project, names.OpenFaaSFunctionsPath)
}

// credential is the request's API key: the password of basic auth, a
// bearer token, or X-API-Key.
func credential(r *http.Request) string {
	if _, pw, ok := r.BasicAuth(); ok {
		return pw
	}
	if k := r.Header.Get(HeaderAPIKey); k != "" {
		return k
	}
	return bearer(r)
}

// keyProject checks the request's key against project ("" for any
// project); it returns the key's project (or "" when auth is none).
func (f *openFaaS) keyProject(r *http.Request, project string) (string, *CallError) {
	if f.cfg.Auth == AuthNone {
		return "", nil
	}
	key := credential(r)
	if key == "" {
		return "", callError(http.StatusUnauthorized, "Unauthorized", "the OpenFaaS API needs an API key: send it as the password of basic auth (faas-cli login -u admin --password <key>), as `Authorization: Bearer <key>` or as `%s: <key>`", HeaderAPIKey)
	}
	if f.g.opts.keys == nil {
		return "", callError(http.StatusUnauthorized, "Unauthorized", "this gateway has no API keys configured, so the OpenFaaS API cannot be called")
	}
	kp, routes, ok := f.g.opts.keys.Lookup(HashKey(key))
	if !ok {
		return "", callError(http.StatusUnauthorized, "Unauthorized", "the API key is not valid: check it, or ask for a new key (butter key create)")
	}
	if project != "" && kp != project {
		return "", callError(http.StatusForbidden, "Forbidden", "the API key belongs to project %s, not to project %s", kp, project)
	}
	if len(routes) > 0 {
		return "", callError(http.StatusForbidden, "Forbidden", "the API key may call only %s: the OpenFaaS API takes keys of the project with no route restrictions", strings.Join(routes, ", "))
	}
	return kp, nil
}

// authorize checks the request's key against project.
func (f *openFaaS) authorize(r *http.Request, project string) *CallError {
	_, e := f.keyProject(r, project)
	return e
}

// fail answers an OpenFaaS request that did not reach a function.
func (f *openFaaS) fail(w http.ResponseWriter, r *http.Request, label, id string, e *CallError) {
	w.Header().Set(HeaderRequestID, id)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="butter"`)
	}
	writeCallError(w, e, id, e.Message)
	f.g.metrics.observe(label, e.Status, 0)
	if f.g.log.IsInfo() {
		f.g.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", label, "status", e.Status, "request_id", id, "error", e.Error())
	}
}

// route is the route an OpenFaaS call of t is served as: direct, no
// auth (checked before), the function's own timeout. Its path is the
// literal one, so that {name} does not become a parameter.
func (f *openFaaS) route(t target, prefix string) *route {
	path := prefix + t.name
	return &route{
		Route: Route{Method: names.MethodAny, Path: path, Project: t.fn.Project, Revision: t.fn.Revision,
			Function: t.fn.Name, Pool: t.fn.Pool, Auth: AuthNone, Mode: ModeDirect},
		pattern: names.MethodAny + " " + path,
		steps:   []step{{Step: pipeline.Step{Function: t.fn.Name}, pool: t.fn.Pool}},
	}
}

// inner is the request as the function sees it: the path after
// /function/{name} ("/" when none), the query as sent, and the request
// id in X-Request-Id, which serveRoute keeps.
func inner(r *http.Request, id string) *http.Request {
	c := r.Clone(r.Context())
	c.URL.Path, c.URL.RawPath = "/"+r.PathValue("path"), ""
	c.Header.Set(HeaderRequestID, id)
	return c
}

// serveSync serves /function/{name}[/path], any method, as a direct
// call of the function; the answer is the function's, with X-Call-Id
// (the request id) and X-Start-Time as OpenFaaS sends them.
func (f *openFaaS) serveSync(w http.ResponseWriter, r *http.Request) {
	id := requestID(r)
	t, e := f.resolve(r)
	if e != nil {
		f.fail(w, r, "openfaas "+names.OpenFaaSFunctionPrefix, id, e)
		return
	}
	w.Header().Set("X-Call-Id", id)
	w.Header().Set("X-Start-Time", strconv.FormatInt(time.Now().UnixNano(), 10))
	f.g.serveRoute(w, inner(r, id), f.route(t, names.OpenFaaSFunctionPrefix))
}

// serveAsync serves POST /async-function/{name}[/path]: the body is read
// whole (at most WithQueuedMaxBody), the call is accepted with 202 and
// X-Call-Id (its invocation id: GET /v1/invocations/{id} reads the
// result too), and runs in the background (runAsync).
func (f *openFaaS) serveAsync(w http.ResponseWriter, r *http.Request) {
	g := f.g
	id := requestID(r)
	label := "openfaas " + names.OpenFaaSAsyncPrefix
	t, e := f.resolve(r)
	if e != nil {
		f.fail(w, r, label, id, e)
		return
	}
	callback := r.Header.Get("X-Callback-Url")
	if callback != "" {
		u, err := url.Parse(callback)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			f.fail(w, r, label, id, callError(http.StatusBadRequest, "BadRequest", "X-Callback-Url %q: send an absolute http:// or https:// URL", callback))
			return
		}
	}
	limit := g.opts.queuedMaxBody
	if r.ContentLength > limit {
		f.fail(w, r, label, id, callError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "the request body of %d bytes is larger than the limit of async calls, %d bytes", r.ContentLength, limit))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		f.fail(w, r, label, id, callError(http.StatusBadRequest, "BadRequest", "reading the request body failed: %v", err))
		return
	}
	if int64(len(body)) > limit {
		f.fail(w, r, label, id, callError(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "the request body is larger than the limit of async calls, %d bytes", limit))
		return
	}
	rt := f.route(t, names.OpenFaaSAsyncPrefix)
	in := inner(r, id)
	base, perr := g.baseHeader(in, rt, id)
	if perr != nil {
		f.fail(w, r, label, id, perr)
		return
	}
	call := &asyncCall{
		t: t, rt: rt, id: id, body: body, base: base, callback: callback,
		contentType: r.Header.Get("Content-Type"), events: queuedHeaders(in, rt, base),
		topic: f.queuedTopic(t.fn.Project, t.fn.Name),
	}

	g.asyncMu.Lock()
	if g.closed {
		g.asyncMu.Unlock()
		f.fail(w, r, label, id, callError(http.StatusServiceUnavailable, "Unavailable", "the gateway is shutting down: retry on another one"))
		return
	}
	inv, ok := g.results.add(t.fn.Project, rt.pattern)
	if !ok {
		g.asyncMu.Unlock()
		f.fail(w, r, label, id, callError(http.StatusServiceUnavailable, "Unavailable", "%d async invocations are pending on this gateway, its limit: retry later", g.opts.maxResults))
		return
	}
	g.wg.Add(1)
	g.asyncMu.Unlock()
	g.metrics.setAsync(g.results.counts())
	call.inv = inv
	rt.Topic = call.topic
	go f.runAsync(call)

	w.Header().Set(HeaderRequestID, id)
	w.Header().Set("X-Call-Id", inv)
	w.Header().Set("Location", "/v1/invocations/"+inv)
	w.WriteHeader(http.StatusAccepted)
	g.metrics.observe(label, http.StatusAccepted, 0)
	if g.log.IsInfo() {
		g.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", label, "project", t.fn.Project,
			"function", t.fn.Name, "mode", "async", "status", http.StatusAccepted, "request_id", id, "invocation", inv, "via", call.via())
	}
}

// queuedTopic is the request topic of a function that a queued or async
// route of the table calls (its pool consumes it), or "" when there is
// none or the gateway has no broker.
func (f *openFaaS) queuedTopic(project, function string) string {
	if f.g.opts.requester == nil {
		return ""
	}
	for _, r := range f.g.table.Load().routes {
		if r.Project == project && r.Function == function && (r.Mode == ModeQueued || r.Mode == ModeAsync) {
			return r.Topic
		}
	}
	return ""
}

// asyncCall is an accepted call of /async-function.
type asyncCall struct {
	t           target
	rt          *route
	id, inv     string
	body        []byte
	base        http.Header       // to the pool, in direct mode
	events      map[string]string // the request event's headers, through Kafka
	contentType string
	topic       string // "": direct
	callback    string
}

func (c *asyncCall) via() string {
	if c.topic != "" {
		return "kafka"
	}
	return "direct"
}

// runAsync runs an accepted call within AsyncTimeout: through Kafka when
// the function consumes its request topic (durable once Kafka
// acknowledged it), else in direct mode from this gateway. The result is
// kept for GET /v1/invocations/{id} and, with X-Callback-Url, POSTed
// there once (callback).
func (f *openFaaS) runAsync(c *asyncCall) {
	g := f.g
	defer g.wg.Done()
	start := time.Now()
	deadline := start.Add(f.cfg.AsyncTimeout)
	ctx, cancel := context.WithDeadline(g.ctx, deadline)
	defer cancel()
	var out []byte
	var hdr http.Header
	status := http.StatusOK
	var ce *CallError
	if c.topic != "" {
		var err error
		f.count(c.t.fn.Project, c.t.fn.Name)
		out, err = g.opts.requester.Call(broker.WithHeaders(ctx, c.events), c.topic, nil, c.body, deadline)
		if err != nil {
			ce = queuedError(ctx, c.rt, err)
		}
	} else {
		out, hdr, status, ce = f.callDirect(ctx, c, deadline)
	}
	g.results.finish(c.inv, out, ce)
	g.metrics.setAsync(g.results.counts())
	took := time.Since(start)
	args := []any{"invocation", c.inv, "function", c.t.fn.Name, "project", c.t.fn.Project, "request_id", c.id, "bytes", len(out), "via", c.via()}
	if ce != nil {
		args = append(args, "error", ce.Error())
	}
	g.log.Info("async invocation done", args...)
	if c.callback == "" {
		return
	}
	if ce != nil {
		status = ce.Status
		b, _ := json.Marshal(errorBody{Error: ce.Message, Type: ce.Type, RequestID: c.id, Details: ce.Details})
		out, hdr = b, http.Header{"Content-Type": {"application/json"}}
	}
	if err := f.post(ctx, c, start, took, status, hdr, out); err != nil {
		g.log.Warn("async invocation: the callback failed; the result stays readable at /v1/invocations/{id}", "invocation", c.inv, "callback", c.callback, "error", err)
	}
}

// maxAsyncOutput bounds the output of an async call run in direct mode,
// which is kept in memory until its result expires.
const maxAsyncOutput = 8 << 20

// callDirect calls the function in direct mode with the accepted body
// and reads its output whole (at most maxAsyncOutput).
func (f *openFaaS) callDirect(ctx context.Context, c *asyncCall, deadline time.Time) ([]byte, http.Header, int, *CallError) {
	ch := &chain{g: f.g, project: c.t.fn.Project, steps: c.rt.steps, base: c.base, contentType: c.contentType,
		in: &inputBody{r: bytes.NewReader(c.body)}, length: int64(len(c.body)), deadline: deadline}
	resp, err := ch.run(ctx)
	if err != nil {
		return nil, nil, 0, err.(*CallError)
	}
	defer ch.close()
	out, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAsyncOutput+1))
	if len(out) > maxAsyncOutput {
		return nil, nil, 0, callError(http.StatusBadGateway, "OutputTooLarge", "the output of an async call is kept in memory and may be at most %d bytes", maxAsyncOutput)
	}
	if e := ch.failure(ctx, readErr); e != nil {
		return nil, nil, 0, e
	}
	if t := resp.Trailer.Get(names.HeaderError); t != "" {
		return nil, nil, 0, trailerError(t)
	}
	h := http.Header{}
	status := ch.head(h, resp) // the handlers' status and headers, as a direct call answers
	return out, h, status, nil
}

// post sends an async call's result to its callback URL, as OpenFaaS's
// queue worker does: a POST of the function's output (or the gateway's
// error document), with the function's headers, X-Call-Id,
// X-Function-Name, X-Function-Status, X-Duration-Seconds and
// X-Start-Time. It is sent once; a failure is logged.
func (f *openFaaS) post(ctx context.Context, c *asyncCall, start time.Time, took time.Duration, status int, hdr http.Header, out []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.callback.Timeout+time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.callback, bytes.NewReader(out))
	if err != nil {
		return err
	}
	for k, vs := range hdr {
		if !strings.HasPrefix(strings.ToLower(k), "butter-") {
			req.Header[k] = slices.Clone(vs)
		}
	}
	req.Header.Set("X-Call-Id", c.inv)
	req.Header.Set(HeaderRequestID, c.id)
	req.Header.Set("X-Function-Name", c.t.name)
	req.Header.Set("X-Function-Status", strconv.Itoa(status))
	req.Header.Set("X-Duration-Seconds", strconv.FormatFloat(took.Seconds(), 'f', 6, 64))
	req.Header.Set("X-Start-Time", strconv.FormatInt(start.UnixNano(), 10))
	resp, err := f.callback.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the callback answered %s", resp.Status)
	}
	return nil
}

// faasFunction is one function as OpenFaaS's GET /system/functions lists
// it (its FunctionStatus schema).
type faasFunction struct {
	Name              string            `json:"name"`
	Image             string            `json:"image"`
	Namespace         string            `json:"namespace"`
	EnvProcess        string            `json:"envProcess"`
	Secrets           []string          `json:"secrets"`
	Labels            map[string]string `json:"labels"`
	Annotations       map[string]string `json:"annotations"`
	InvocationCount   int64             `json:"invocationCount"`
	Replicas          uint64            `json:"replicas"`
	AvailableReplicas uint64            `json:"availableReplicas"`
}

// serveList serves GET /system/functions: the functions of the key's
// project (of every project without auth), optionally of one
// ?namespace= (a project), sorted by project and name.
func (f *openFaaS) serveList(w http.ResponseWriter, r *http.Request) {
	id := requestID(r)
	label := "openfaas " + names.OpenFaaSFunctionsPath
	kp, e := f.keyProject(r, "")
	if e != nil {
		f.fail(w, r, label, id, e)
		return
	}
	ns := r.URL.Query().Get("namespace")
	out := []faasFunction{}
	fns := f.functions()
	sort.Slice(fns, func(i, j int) bool {
		if fns[i].Project != fns[j].Project {
			return fns[i].Project < fns[j].Project
		}
		return fns[i].Name < fns[j].Name
	})
	t := f.g.table.Load()
	for _, fn := range fns {
		if (kp != "" && fn.Project != kp) || (ns != "" && fn.Project != ns) {
			continue
		}
		pool := fn.Pool
		if pool == "" {
			pool = f.g.poolOf(t, fn.Project, fn.Name)
		}
		eps := uint64(len(f.g.resolver.Endpoints(fn.Project, pool)))
		labels := map[string]string{"butter.project": fn.Project, "butter.pool": pool}
		if fn.Runtime != "" {
			labels["butter.runtime"] = fn.Runtime
		}
		for k, v := range fn.Labels {
			labels[k] = v
		}
		ann := map[string]string{}
		if fn.Revision != "" {
			ann["butter.revision"] = fn.Revision
		}
		for k, v := range fn.Annotations {
			ann[k] = v
		}
		secrets := fn.Secrets
		if secrets == nil {
			secrets = []string{}
		}
		out = append(out, faasFunction{
			Name: fn.Name, Image: image(fn), Namespace: fn.Project, EnvProcess: fn.Process, Secrets: secrets,
			Labels: labels, Annotations: ann, InvocationCount: f.invocations(fn.Project, fn.Name),
			Replicas: eps, AvailableReplicas: eps,
		})
	}
	w.Header().Set(HeaderRequestID, id)
	writeJSON(w, http.StatusOK, out)
	f.g.metrics.observe(label, http.StatusOK, 0)
}

// image is what OpenFaaS's image field shows of a Butter function, which
// runs from a bundle, not an image: "<project>/<function>:<revision>",
// the revision standing for the tag.
func image(fn FunctionInfo) string {
	s := fn.Project + "/" + fn.Name
	if fn.Revision != "" {
		s += ":" + fn.Revision
	}
	return s
}
