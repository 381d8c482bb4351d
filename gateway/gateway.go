// Package gateway is Butter's HTTP ingress. It maps routes
// ("POST /devices/{device}/readings") to a function or a pipeline of
// functions and forwards each request to the pools that host them:
//
//   - direct mode streams the request body to a pool's invoke endpoint
//     (POST /v1/invoke/{function}, see package pool) and the output back,
//     on the endpoint with the fewest requests in flight;
//   - pipelines ("a | b | c") stream each step's output into the next
//     step's input;
//   - queued and async modes go through Kafka (broker.Requester): queued
//     answers with the reply, async answers 202 Accepted with an
//     invocation id to poll at /v1/invocations/{id}.
//
// Per route it applies auth (API key or JWT), a body-size limit, a
// deadline, a rate limit and CORS, and it logs, counts and times every
// request. A route may also call external HTTP functions as pipeline
// steps (external.go), run middleware functions around its handler
// (middleware.go), and convert CBOR and MessagePack to and from the JSON
// its function declares (serialize.go). The route table is swapped atomically (SetRoutes): a request
// keeps the table it started with.
//
// Neighbours: package pool serves the invoke endpoint the gateway calls;
// package broker carries queued calls; the control plane (scheduler)
// supplies the routes and the hashed API keys; Nomad's service catalog
// (NomadResolver) or a static map (StaticResolver, for `butter dev`) says
// where the pools listen. docs/gateway.md describes the contract.
package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Headers the gateway reads or sets, beside the pool's (Butter-Timeout,
// Butter-Option-*, Butter-Error).
const (
	// HeaderRequestID identifies a request end to end; the gateway keeps
	// a well-formed incoming one and generates one otherwise.
	HeaderRequestID = "X-Request-Id"
	// HeaderAPIKey carries an API key, as an alternative to
	// "Authorization: Bearer <key>".
	HeaderAPIKey = "X-API-Key"
)

// The invoke headers the gateway reads and sends to pools are in package
// names: names.HeaderPipeline names the steps of an ad-hoc pipeline sent to
// POST /v1/invoke/{project}; names.HeaderParamPrefix passes a route or
// query parameter to every step (the pool hands it to the function as meta
// "param.<name>", docs/worker-protocol.md).

type options struct {
	logger         hclog.Logger
	keys           Keys
	requester      Requester
	dialTimeout    time.Duration
	jwksClient     *http.Client
	jwksRefetch    time.Duration
	jwksMaxAge     time.Duration
	resultTTL      time.Duration
	maxResults     int
	queuedMaxBody  int64
	convertMaxBody int64
	queuedTimeout  time.Duration
	placement      func(project, function string) (string, bool)
	invokeAuth     string
	metrics        *Metrics
	ejectFor       time.Duration
	maxIdlePerHost int
	waker          Waker // wake.go
	wakeQueue      int
	openfaas       *OpenFaaS             // openfaas.go
	functions      func() []FunctionInfo // openfaas.go
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger of the access log and of the gateway's own
// events. The default discards.
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

// WithKeys sets where API keys are looked up. Without it, routes with
// auth "api_key" are refused by SetRoutes and the ad-hoc invoke endpoint
// answers 401 unless WithInvokeAuth("none") opens it.
func WithKeys(k Keys) Option { return func(o *options) { o.keys = k } }

// WithRequester enables the queued and async modes: calls go through r
// (a *broker.Requester) to the function's request topic. Without it,
// SetRoutes refuses queued and async routes.
func WithRequester(r Requester) Option { return func(o *options) { o.requester = r } }

// WithDialTimeout bounds a connection attempt to a pool endpoint. A
// failed attempt is retried on another endpoint, so a short timeout moves
// on from an unreachable one quickly. The default is 2s.
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithEjectTime sets how long, at most, an endpoint that refused a
// connection is passed over while others remain: 100ms after its first
// refusal, doubling with each further refusal in a row up to this, and
// over once a connection to it succeeds. The default is 5s; 0 never
// ejects.
func WithEjectTime(d time.Duration) Option { return func(o *options) { o.ejectFor = d } }

// WithJWKSClient sets the HTTP client that fetches JWKS documents. The
// default times out after 10s.
func WithJWKSClient(c *http.Client) Option { return func(o *options) { o.jwksClient = c } }

// WithJWKSRefetch sets how often, at most, a JWKS is fetched again
// because a token names a key id it does not hold (a key rotation). The
// limit keeps forged kids from turning every request into a fetch. The
// default is 10s.
func WithJWKSRefetch(d time.Duration) Option { return func(o *options) { o.jwksRefetch = d } }

// WithJWKSMaxAge sets how long fetched keys are used before the JWKS is
// fetched again, so that revoked keys stop working. The default is 1h.
func WithJWKSMaxAge(d time.Duration) Option { return func(o *options) { o.jwksMaxAge = d } }

// WithResultTTL sets how long an async invocation's result is kept after
// it completes. The default is 10 minutes.
func WithResultTTL(d time.Duration) Option { return func(o *options) { o.resultTTL = d } }

// WithMaxResults bounds the async invocations kept in memory, pending and
// completed. When it is reached, the oldest completed result is dropped;
// when every entry is pending, new async calls answer 503. The default
// is 10000.
func WithMaxResults(n int) Option { return func(o *options) { o.maxResults = n } }

// WithQueuedMaxBody is the largest body of a queued or async call that
// travels as one Kafka record (Kafka's default limit is 1 MiB); set it to
// the broker's message.max.bytes less the headers. A larger body is not
// refused: the call goes direct to a pool (oversize.go); only a route's
// MaxBody refuses a body. The default is 1 MiB.
func WithQueuedMaxBody(n int64) Option { return func(o *options) { o.queuedMaxBody = n } }

// WithConvertMaxBody is the largest CBOR or MessagePack request body the
// gateway converts to JSON, and the largest JSON output it converts back
// (serialize.go): both are read whole. A larger body answers 413
// PayloadTooLarge, a larger output 502 OutputTooLarge (the client may ask
// for JSON, which streams). JSON bodies and outputs pass through
// untouched, of any size. The default is 8 MiB.
func WithConvertMaxBody(n int64) Option { return func(o *options) { o.convertMaxBody = n } }

// WithQueuedTimeout is the deadline of queued and async calls on routes
// that set none. The default is 30s.
func WithQueuedTimeout(d time.Duration) Option { return func(o *options) { o.queuedTimeout = d } }

// WithPlacement tells the ad-hoc invoke endpoint which pool of a project
// hosts a function. Without it, or when it answers false, the pool of a
// route naming the function is used, else the pool "default".
func WithPlacement(f func(project, function string) (pool string, ok bool)) Option {
	return func(o *options) { o.placement = f }
}

// WithInvokeAuth sets the auth of the ad-hoc endpoint POST
// /v1/invoke/{project}: "api_key" (the default: a key of that project
// whose routes are unrestricted or include "POST /v1/invoke/{project}")
// or "none", for `butter dev` only.
func WithInvokeAuth(auth string) Option { return func(o *options) { o.invokeAuth = auth } }

// WithMetrics records the gateway's metrics in m instead of a new
// registry.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// Gateway is the HTTP ingress. It is an http.Handler; create it with New,
// give it routes with SetRoutes, and Close it when done.
type Gateway struct {
	opts      options
	resolver  Resolver
	transport *http.Transport // calls whose body streams
	client    *poolClient     // calls whose body is in memory (poolclient.go)
	lb        *balancer
	table     atomic.Pointer[table]
	jwks      *jwksCaches
	results   *results
	metrics   *Metrics
	log       hclog.Logger
	rates     projectRates
	wake      *wakes // nil without WithWaker (wake.go)
	// splits are the projects' canaries, canaryStats their counts by
	// project (canary.go).
	splits      splitsState
	canaryStats sync.Map
	faas        *openFaaS // nil without WithOpenFaaS (openfaas.go)

	// ctx bounds the async calls; Close cancels it and waits on wg.
	// asyncMu orders wg.Add after closed is checked.
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	asyncMu sync.Mutex
	closed  bool
}

// New returns a gateway that finds pools through resolver. It starts
// with no routes: every route request answers 404 until SetRoutes.
func New(resolver Resolver, opts ...Option) *Gateway {
	o := options{
		logger:         hclog.NewNullLogger(),
		dialTimeout:    2 * time.Second,
		jwksClient:     &http.Client{Timeout: 10 * time.Second},
		jwksRefetch:    10 * time.Second,
		jwksMaxAge:     time.Hour,
		resultTTL:      10 * time.Minute,
		maxResults:     10000,
		queuedMaxBody:  1 << 20,
		convertMaxBody: 8 << 20,
		queuedTimeout:  30 * time.Second,
		invokeAuth:     "api_key",
		ejectFor:       5 * time.Second,
		maxIdlePerHost: 64,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics()
	}
	dialer := &net.Dialer{Timeout: o.dialTimeout, KeepAlive: 30 * time.Second}
	// Only dial errors are retried (on another endpoint): they are the
	// one failure where the pool surely saw nothing.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{addr: addr, err: err}
		}
		return c, nil
	}
	g := &Gateway{
		opts:     o,
		resolver: resolver,
		lb:       newBalancer(o.ejectFor),
		jwks:     newJWKSCaches(o.jwksClient, o.jwksRefetch, o.jwksMaxAge),
		results:  newResults(o.maxResults, o.resultTTL),
		metrics:  o.metrics,
		log:      o.logger,
	}
	const idleTimeout = 30 * time.Second
	g.client = &poolClient{dial: dial, maxIdle: o.maxIdlePerHost, idleTimeout: idleTimeout}
	g.transport = &http.Transport{
		DialContext:           dial,
		MaxIdleConnsPerHost:   o.maxIdlePerHost,
		IdleConnTimeout:       idleTimeout,
		ResponseHeaderTimeout: 0, // the route's deadline bounds the call
		DisableCompression:    true,
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if o.openfaas != nil {
		g.faas = newOpenFaaS(g, *o.openfaas)
	}
	g.table.Store(g.buildTable(nil))
	if o.waker != nil {
		g.wake = newWakes(g, o.waker, o.wakeQueue)
	}
	return g
}

// Close stops the async calls in flight (their callers will find them
// failed with a Timeout) and closes idle connections to the pools. It
// does not close the resolver or the requester, which the caller owns.
func (g *Gateway) Close() {
	g.asyncMu.Lock()
	g.closed = true
	g.asyncMu.Unlock()
	g.cancel()
	g.wg.Wait()
	if g.wake != nil {
		g.wake.wait()
	}
	g.transport.CloseIdleConnections()
	g.client.close()
}

// ServeHTTP serves the route table and the gateway's own endpoints:
//
//	GET  /v1/health              200 {"status":"ok","routes":N}
//	GET  /v1/routes              the route table
//	POST /v1/invoke/{project}    an ad-hoc pipeline (Butter-Pipeline header or ?pipeline=)
//	GET  /v1/invocations/{id}    an async call: 202 while pending, then its result
//	GET  /metrics                Prometheus metrics
//
// A route whose pattern collides with one of these is refused by
// SetRoutes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.table.Load().mux.ServeHTTP(w, r)
}

// Metrics returns the gateway's metrics.
func (g *Gateway) Metrics() *Metrics { return g.metrics }
