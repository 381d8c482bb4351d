package gateway

import (
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/butterfn/butter/pipeline"
)

// The modes of a route.
const (
	// ModeDirect streams the call to a pool's invoke endpoint (the
	// default).
	ModeDirect = "direct"
	// ModeQueued sends the call through Kafka and answers with the reply.
	ModeQueued = "queued"
	// ModeAsync sends the call through Kafka and answers 202 Accepted at
	// once, with an invocation id to poll.
	ModeAsync = "async"
)

// The auth kinds of a route.
const (
	AuthNone   = "none"
	AuthAPIKey = "api_key"
	AuthJWT    = "jwt"
)

// DefaultPool is the pool a function lives in when nothing says
// otherwise, as in package spec.
const DefaultPool = "default"

// Route maps requests to a function or a pipeline. The zero value of each
// optional field is documented; Method, Path, Project and one of Function
// and Pipeline are required.
type Route struct {
	// Method and Path form the pattern, read as Go's http.ServeMux reads
	// "METHOD /path": {name} matches one segment, {name...} the rest of
	// the path, and the most specific pattern wins. A GET route also
	// answers HEAD.
	Method string `json:"method"`
	Path   string `json:"path"`

	Project  string `json:"project"`
	Revision string `json:"revision,omitempty"`

	// Function is the function called. Pipeline, instead, lists the
	// steps of a pipeline, each a function name optionally followed by
	// options: "sed e=s/hate/love/", in package pipeline's grammar
	// (pipeline.ParseStep). Values with blanks or "|" are quoted as Go
	// strings: `sed e="s/a b/c/"`. A pipeline step may also be an
	// external HTTP function: its http:// or https:// URL, optionally
	// followed by its timeout, "http://host/path timeout=10s"
	// (external.go).
	Function string   `json:"function,omitempty"`
	Pipeline []string `json:"pipeline,omitempty"`

	// JSONInput says that the function (a pipeline's first step) takes
	// JSON, JSONOutput that it (the last step) answers JSON: their
	// requests may then come as CBOR or MessagePack, and their answers go
	// out as the client's Accept prefers (serialize.go).
	JSONInput  bool `json:"json_input,omitempty"`
	JSONOutput bool `json:"json_output,omitempty"`

	// Middleware are functions of the project that see each request
	// before the handler and its answer after it, in this order
	// (middleware.go); each is hosted by Pools[name], else Pool.
	Middleware []string `json:"middleware,omitempty"`

	// Pool is the pool hosting the function (or every step); "" is
	// "default". Pools overrides it for the steps of a pipeline hosted in
	// other pools, by function name.
	Pool  string            `json:"pool,omitempty"`
	Pools map[string]string `json:"pools,omitempty"`

	// Auth is "none" (the default), "api_key" or "jwt". A jwt route
	// needs JWKSURL and Audience; Issuer, if set, must match too.
	Auth     string `json:"auth,omitempty"`
	JWKSURL  string `json:"jwks_url,omitempty"`
	Audience string `json:"audience,omitempty"`
	Issuer   string `json:"issuer,omitempty"`

	// MaxBody bounds the request body in bytes (413 beyond it); 0 is
	// unlimited. A queued or async body above WithQueuedMaxBody goes
	// direct instead of through Kafka.
	MaxBody int64 `json:"max_body,omitempty"`
	// Timeout bounds the whole call (504 beyond it); 0 leaves the
	// functions' own timeouts (and WithQueuedTimeout) in charge.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Rate is the sustained requests per second of the route and Burst
	// the bucket's size (429 beyond them); Rate 0 is unlimited, Burst 0
	// is max(1, Rate).
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// CORSOrigins are the origins browsers may call the route from, or
	// "*" for any.
	CORSOrigins []string `json:"cors_origins,omitempty"`

	// Mode is "direct" (the default), "queued" or "async".
	Mode string `json:"mode,omitempty"`
	// Topic is the request topic of queued and async calls; "" is
	// names.RequestTopic(Project, Function).
	Topic string `json:"topic,omitempty"`
}

// Pattern returns "METHOD /path", the route's identity in the table, in
// API keys' route lists, in metrics and in logs.
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// step is one function call of a route: a step of package pipeline's
// grammar, and the pool hosting its function.
type step struct {
	pipeline.Step
	pool string
	// An external step (external.go): Function holds its URL, timeout
	// bounds its call (0: the route's deadline only).
	url     *url.URL
	timeout time.Duration
}

// route is a Route ready to serve.
type route struct {
	Route
	pattern    string // "METHOD /path", as routes are named in errors and metrics
	muxPat     string // the ServeMux pattern: the path alone for an ANY route
	steps      []step
	middleware []step
	limiter    *rate.Limiter
	origins    map[string]bool
	anyOrig    bool
	adhoc      bool

	// The route's series of its gateway's metrics, looked up by labels
	// once rather than on every request: its duration's, from its first
	// request, and its count of status 200, from its first 200.
	duration atomic.Pointer[prometheus.Observer]
	ok       atomic.Pointer[prometheus.Counter]
}

// observe counts a request of the route answered with status after d.
func (r *route) observe(m *Metrics, status int, d time.Duration) {
	if status == http.StatusOK {
		ok := r.ok.Load()
		if ok == nil {
			c := m.requests.WithLabelValues(r.pattern, "200")
			ok = &c
			r.ok.Store(ok)
		}
		(*ok).Inc()
	} else {
		m.requests.WithLabelValues(r.pattern, strconv.Itoa(status)).Inc()
	}
	dur := r.duration.Load()
	if dur == nil {
		o := m.duration.WithLabelValues(r.pattern)
		dur = &o
		r.duration.Store(dur)
	}
	(*dur).Observe(d.Seconds())
}

func (r *route) target() string {
	if r.Function != "" {
		return r.Function
	}
	names := make([]string, len(r.steps))
	for i, s := range r.steps {
		names[i] = s.String()
	}
	return strings.Join(names, " | ")
}

// parseStep reads one step of a route, "name k=v ...", with package
// pipeline's grammar.
func parseStep(text string) (step, error) {
	if isExternal(text) {
		return externalStep(text)
	}
	ps, err := pipeline.ParseStep(text)
	if err != nil {
		return step{}, err
	}
	return step{Step: ps}, nil
}

// compile checks a route and prepares it. Every problem is reported, each
// with what to change.
func (g *Gateway) compile(in Route) (*route, error) {
	r := &route{Route: in}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.Auth == "" {
		r.Auth = AuthNone
	}
	if r.Mode == "" {
		r.Mode = ModeDirect
	}
	if r.Pool == "" {
		r.Pool = DefaultPool
	}
	r.pattern = r.Pattern()
	r.muxPat = r.pattern
	if r.Method == names.MethodAny {
		r.muxPat = r.Path // ServeMux matches every method on a pattern without one
	}
	if !validMethod(r.Method) {
		bad("method %q: use an upper-case HTTP method such as POST", r.Method)
	}
	if !strings.HasPrefix(r.Path, "/") {
		bad("path %q: a path starts with /", r.Path)
	}
	if r.Project == "" {
		bad("no project: every route belongs to one")
	}
	switch {
	case r.Function != "" && len(r.Pipeline) > 0:
		bad("both function %q and a pipeline: set one", r.Function)
	case r.Function != "":
		if !pipeline.ValidName(r.Function) {
			bad("function %q: a function name is letters, digits, '-' and '_'", r.Function)
		}
		r.steps = []step{{Step: pipeline.Step{Function: r.Function}, pool: r.Pool}}
	case len(r.Pipeline) > 0:
		for _, s := range r.Pipeline {
			st, err := parseStep(s)
			if err != nil {
				bad("pipeline: %v", err)
				continue
			}
			if st.url == nil {
				st.pool = r.Pool
				if p := r.Pools[st.Function]; p != "" {
					st.pool = p
				}
			}
			r.steps = append(r.steps, st)
		}
	default:
		bad("no function and no pipeline: set one")
	}
	seen := map[string]bool{}
	for _, name := range r.Middleware {
		switch {
		case !pipeline.ValidName(name):
			bad("middleware %q: a function name is letters, digits, '-' and '_'", name)
		case seen[name]:
			bad("middleware %q is listed twice: a middleware runs once per request", name)
		default:
			seen[name] = true
			pool := r.Pool
			if p := r.Pools[name]; p != "" {
				pool = p
			}
			r.middleware = append(r.middleware, step{Step: pipeline.Step{Function: name}, pool: pool})
		}
	}
	switch r.Auth {
	case AuthNone:
	case AuthAPIKey:
		if g.opts.keys == nil {
			bad("auth api_key, but the gateway has no key store: start it with WithKeys")
		}
	case AuthJWT:
		if r.JWKSURL == "" {
			bad("auth jwt needs jwks_url: the URL of the issuer's JSON Web Key Set")
		}
		if r.Audience == "" {
			bad("auth jwt needs audience: the aud claim tokens for this route carry")
		}
	default:
		bad("auth %q: use none, api_key or jwt", r.Auth)
	}
	switch r.Mode {
	case ModeDirect:
	case ModeQueued, ModeAsync:
		if g.opts.requester == nil {
			bad("mode %s needs a broker: start the gateway with WithRequester", r.Mode)
		}
		if r.Function == "" {
			bad("mode %s calls one function through Kafka: pipelines run in direct mode", r.Mode)
		}
		if r.Topic == "" && r.Function != "" {
			r.Topic = names.RequestTopic(r.Project, r.Function)
		}
	default:
		bad("mode %q: use direct, queued or async", r.Mode)
	}
	if r.MaxBody < 0 {
		bad("max_body %d: use a size in bytes, or 0 for no limit", r.MaxBody)
	}
	if r.Timeout < 0 {
		bad("timeout %s: use a positive duration, or 0 for none", r.Timeout)
	}
	if r.Rate < 0 || math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0) {
		bad("rate %v: use requests per second, or 0 for no limit", r.Rate)
	}
	if r.Burst < 0 {
		bad("burst %d: use a positive number of requests", r.Burst)
	}
	for _, o := range r.CORSOrigins {
		if o == "*" {
			r.anyOrig = true
			continue
		}
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			bad("cors origin %q: write an origin as scheme://host[:port], or *", o)
			continue
		}
		if r.origins == nil {
			r.origins = map[string]bool{}
		}
		r.origins[strings.TrimSuffix(o, "/")] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("route %q: %w", r.pattern, errors.Join(errs...))
	}
	if r.Rate > 0 {
		burst := r.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(r.Rate)))
		}
		r.limiter = rate.NewLimiter(rate.Limit(r.Rate), burst)
	}
	return r, nil
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func (r *route) allowsOrigin(origin string) bool {
	return origin != "" && (r.anyOrig || r.origins[origin])
}

// table is one version of the route table: its routes and the mux that
// matches them, with the gateway's own endpoints.
type table struct {
	routes    []*route
	byPattern map[string]*route
	byMux     map[string]*route // by ServeMux pattern, for lookup
	methods   []string
	mux       *http.ServeMux
}

// SetRoutes replaces the route table. It checks every route first and
// changes nothing if one is wrong: the error lists every problem. Requests
// in flight finish on the table they started with; new requests see the
// new one. A route that keeps its pattern, rate and burst keeps its rate
// limiter's state.
func (g *Gateway) SetRoutes(routes []Route) error {
	var errs []error
	var compiled []*route
	for _, in := range routes {
		r, err := g.compile(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		compiled = append(compiled, r)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	old := g.table.Load()
	for _, r := range compiled {
		if o := old.byPattern[r.pattern]; o != nil && o.limiter != nil && r.limiter != nil &&
			o.limiter.Limit() == r.limiter.Limit() && o.limiter.Burst() == r.limiter.Burst() {
			r.limiter = o.limiter
		}
	}
	t, err := g.tryBuildTable(compiled)
	if err != nil {
		return err
	}
	g.table.Store(t)
	return nil
}

// Routes returns the routes of the current table, in the order given.
func (g *Gateway) Routes() []Route {
	t := g.table.Load()
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		out[i] = r.Route
	}
	return out
}

func (g *Gateway) buildTable(routes []*route) *table {
	t, err := g.tryBuildTable(routes)
	if err != nil {
		panic(err)
	}
	return t
}

// tryBuildTable registers the routes and the gateway's own endpoints in
// a new mux. ServeMux panics on patterns that match the same requests
// with equal precedence; that panic becomes the error.
func (g *Gateway) tryBuildTable(routes []*route) (t *table, err error) {
	t = &table{routes: routes, byPattern: map[string]*route{}, byMux: map[string]*route{}, mux: http.NewServeMux()}
	current, project := "", ""
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("route %q%s conflicts with another route or with the gateway's own endpoints: %v; change its method or path", current, project, p)
		}
	}()
	if g.faas != nil {
		if err := g.faas.check(routes); err != nil {
			return nil, err
		}
		g.faas.register(t.mux) // first, so that a route it collides with is named
	}
	seenMethod := map[string]bool{}
	for _, r := range routes {
		if o, dup := t.byPattern[r.pattern]; dup {
			if o.Project != r.Project {
				return nil, fmt.Errorf("route %q of project %q is also a route of project %q: one of them must change its method or path", r.pattern, r.Project, o.Project)
			}
			return nil, fmt.Errorf("route %q is listed twice: keep one", r.pattern)
		}
		current, project = r.pattern, fmt.Sprintf(" of project %q", r.Project)
		rt := r
		t.byPattern[r.pattern] = r
		t.byMux[r.muxPat] = r
		t.mux.HandleFunc(r.muxPat, func(w http.ResponseWriter, req *http.Request) { g.serveRoute(w, req, rt) })
		if r.Method != names.MethodAny && !seenMethod[r.Method] {
			seenMethod[r.Method] = true
			t.methods = append(t.methods, r.Method)
		}
	}
	project = ""
	current = names.GatewayHealthPattern
	t.mux.HandleFunc(current, func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "routes": len(t.routes)})
	})
	current = names.GatewayRoutesPattern
	t.mux.HandleFunc(current, func(w http.ResponseWriter, req *http.Request) { g.serveRoutes(w, t) })
	current = names.GatewayInvokePattern
	t.mux.HandleFunc(current, g.serveAdHoc)
	current = names.GatewayInvocationPattern
	t.mux.HandleFunc(current, g.serveInvocation)
	current = names.GatewayMetricsPattern
	t.mux.Handle(current, g.metrics.handler())
	current = "/"
	t.mux.HandleFunc(current, func(w http.ResponseWriter, req *http.Request) { g.serveUnmatched(w, req, t) })
	return t, nil
}

// lookup finds the route that would serve method on r's path.
func (t *table) lookup(r *http.Request, method string) *route {
	c := r.Clone(r.Context())
	c.Method = method
	_, pat := t.mux.Handler(c)
	return t.byMux[pat]
}

// serveUnmatched answers requests no route matches: CORS preflights of
// routes, 405 when the path matches a route of another method, else 404.
func (g *Gateway) serveUnmatched(w http.ResponseWriter, r *http.Request, t *table) {
	id := requestID(r)
	w.Header().Set(HeaderRequestID, id)
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		g.servePreflight(w, r, t, id)
		return
	}
	var allowed []string
	for _, m := range t.methods {
		if t.lookup(r, m) != nil {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", id,
			fmt.Sprintf("%s %s: this path takes %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		g.metrics.observe("unmatched", http.StatusMethodNotAllowed, 0)
		return
	}
	writeError(w, http.StatusNotFound, "NotFound", id,
		fmt.Sprintf("no route matches %s %s; GET /v1/routes lists the routes", r.Method, r.URL.Path))
	g.metrics.observe("unmatched", http.StatusNotFound, 0)
}

// routeView is a route as GET /v1/routes shows it.
type routeView struct {
	Route
	Pattern string `json:"pattern"`
	Timeout string `json:"timeout,omitempty"`
}

func (g *Gateway) serveRoutes(w http.ResponseWriter, t *table) {
	out := make([]routeView, len(t.routes))
	for i, r := range t.routes {
		v := routeView{Route: r.Route, Pattern: r.pattern}
		if r.Timeout > 0 {
			v.Timeout = r.Timeout.String()
		}
		out[i] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": out})
}
