// Package api is the one way to talk to Butter's control plane: typed
// request and response structs for every endpoint of its v1 HTTP API, and
// a Client built from a Config, shaped like Nomad's own api package.
//
// The server (package scheduler) answers these types and converts them to
// its Raft log types (package scheduler/fsm) at its edge; the CLI
// (cmd/butter), the gateway's route sync (gateway/routesync) and later the
// autoscaler, the UI and the Terraform provider call it through Client.
// The package imports nothing of Butter's own, so every part can use it.
//
//	c, err := api.NewClient(api.DefaultConfig())
//	st, _, err := c.Projects().Status(ctx, "hello", nil)
//
// A failed call returns a *StatusError when the server answered, so that
// callers tell 404 (no such thing) from 409 (conflict) from 503 (no
// leader) with errors.As or StatusCode.
package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The environment variables DefaultConfig reads.
const (
	// EnvAddr is the control plane's API address (default DefaultAddress).
	EnvAddr = "BUTTER_ADDR"
	// EnvToken is the ACL token sent with every request.
	EnvToken = "BUTTER_TOKEN"
	// EnvCACert is a PEM file of CA certificates to verify the server with.
	EnvCACert = "BUTTER_CACERT"
	// EnvClientCert and EnvClientKey are the PEM client certificate and key
	// for mutual TLS.
	EnvClientCert = "BUTTER_CLIENT_CERT"
	EnvClientKey  = "BUTTER_CLIENT_KEY"
	// EnvTLSServerName is the name to verify the server's certificate
	// against, when it differs from the address's host.
	EnvTLSServerName = "BUTTER_TLS_SERVER_NAME"
	// EnvSkipVerify, when true, skips verifying the server's certificate.
	EnvSkipVerify = "BUTTER_SKIP_VERIFY"
)

// DefaultAddress is where a local `butter server` (and `butter dev`)
// serves the API.
const DefaultAddress = "http://127.0.0.1:4750"

// HTTP headers of the API.
const (
	// HeaderToken carries Config.Token, the ACL token's secret. The
	// server also accepts it as "Authorization: Bearer <secret>".
	HeaderToken = "X-Butter-Token"
	// HeaderIndex answers a read with the Raft index of the state it saw
	// (QueryMeta.LastIndex).
	HeaderIndex = "X-Butter-Index"
	// HeaderKnownLeader answers a read with whether the answering node
	// knew of a leader (QueryMeta.KnownLeader).
	HeaderKnownLeader = "X-Butter-Known-Leader"
	// HeaderSnapshotIndex answers a snapshot save with the snapshot's
	// Raft index.
	HeaderSnapshotIndex = "X-Butter-Snapshot-Index"
)

// TLSConfig says how the client verifies the server and proves itself.
type TLSConfig struct {
	// CACert is a PEM file of CA certificates; empty uses the system's.
	CACert string
	// ClientCert and ClientKey are PEM files for mutual TLS; both or
	// neither.
	ClientCert string
	ClientKey  string
	// ServerName overrides the host name verified in the server's
	// certificate.
	ServerName string
	// Insecure skips verifying the server's certificate.
	Insecure bool
}

// Config configures a Client.
type Config struct {
	// Address is the control plane's API, such as http://127.0.0.1:4750.
	// A bare host:port means http, or https when TLS.CACert is set.
	Address string
	// Token is the ACL token's secret, sent as X-Butter-Token with every
	// request.
	Token string
	// TLS configures https addresses. It is ignored when HTTPClient is set.
	TLS TLSConfig
	// HTTPClient, when set, sends the requests. Default: a client of its
	// own with TLS from TLS and no overall timeout (blocking queries and
	// snapshots take as long as they take: bound calls with their
	// context).
	HTTPClient *http.Client
}

// DefaultConfig returns a Config from the environment: BUTTER_ADDR
// (default http://127.0.0.1:4750), BUTTER_TOKEN, BUTTER_CACERT,
// BUTTER_CLIENT_CERT, BUTTER_CLIENT_KEY, BUTTER_TLS_SERVER_NAME and
// BUTTER_SKIP_VERIFY (a strconv.ParseBool value; an unparsable one is
// false).
func DefaultConfig() *Config {
	cfg := &Config{Address: DefaultAddress}
	if v := os.Getenv(EnvAddr); v != "" {
		cfg.Address = v
	}
	cfg.Token = os.Getenv(EnvToken)
	cfg.TLS.CACert = os.Getenv(EnvCACert)
	cfg.TLS.ClientCert = os.Getenv(EnvClientCert)
	cfg.TLS.ClientKey = os.Getenv(EnvClientKey)
	cfg.TLS.ServerName = os.Getenv(EnvTLSServerName)
	if v := os.Getenv(EnvSkipVerify); v != "" {
		cfg.TLS.Insecure, _ = strconv.ParseBool(v)
	}
	return cfg
}

// Client calls the control plane. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient returns a client for cfg (nil: DefaultConfig()). It checks
// the address and loads the TLS files; it does not contact the server.
func NewClient(cfg *Config) (*Client, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	addr := strings.TrimRight(cfg.Address, "/")
	if addr == "" {
		addr = DefaultAddress
	}
	if !strings.Contains(addr, "://") {
		// A CA to verify the server with means the server speaks TLS.
		if cfg.TLS.CACert != "" && cfg.HTTPClient == nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	base, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("control plane address %q: %w", cfg.Address, err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("control plane address %q: want http://host:port or https://host:port", cfg.Address)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tc, err := cfg.TLS.load()
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: base, token: cfg.Token, http: hc}, nil
}

// load builds the crypto/tls configuration.
func (t TLSConfig) load() (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.Insecure, MinVersion: tls.VersionTLS12}
	if t.CACert != "" {
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", t.CACert)
		}
		tc.RootCAs = pool
	}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return nil, errors.New("client certificate: give both the certificate and the key, or neither")
	}
	if t.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Address returns the API's base URL, without a trailing slash (for
// instance to build blob URLs that Nomad's artifact fetcher reads).
func (c *Client) Address() string { return c.base.String() }

// QueryOptions tune a read.
type QueryOptions struct {
	// AllowStale lets any server answer from its own state, without
	// asking the leader (?stale): reads keep working through an election.
	AllowStale bool
	// WaitIndex makes the read a blocking query: the server answers once
	// its state's Raft index exceeds WaitIndex (any write, or a snapshot
	// restore), or after WaitTime, with the state as it is then. The
	// reads of projects, revisions and keys support it; the others
	// ignore it.
	WaitIndex uint64
	// WaitTime bounds a blocking query: zero is the server's default
	// (5 minutes), and it caps longer waits at 10 minutes.
	WaitTime time.Duration
}

// QueryMeta is what a read's answer says about the state it came from.
type QueryMeta struct {
	// LastIndex is the Raft index of the state the answer reflects (the
	// state may be newer, never older): pass it as WaitIndex to wait for
	// the next change.
	LastIndex uint64
	// KnownLeader says whether the answering node knew of a leader.
	KnownLeader bool
}

// ErrorResponse is the body of every non-200 answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// StatusError is a non-200 answer of the API.
type StatusError struct {
	// Code is the HTTP status: 400 a bad request (a name that breaks the
	// name rule, malformed JSON, an unknown field: Message says which),
	// 404 not found, 409 a conflict, 413 a body over the server's limit
	// (Message says the limit and the setting that raises it), 503 no
	// leader (or a forwarding failure), 500 otherwise.
	Code int
	// Message is the server's ErrorResponse.Error, or the body's text.
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// StatusCode returns the HTTP status of a *StatusError in err's chain, or
// 0 when the server did not answer one.
func StatusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// request is one call.
type request struct {
	method string
	path   string // escaped, starting with /v1/
	query  *QueryOptions
	params url.Values // the endpoint's own query parameters
	body   io.Reader
	size   int64 // of body, -1 unknown
	header http.Header
}

// send does a request and returns the response of a 200; any other status
// becomes a *StatusError. The caller closes the body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + r.path
	v := url.Values{}
	for k, vs := range r.params {
		v[k] = vs
	}
	if q := r.query; q != nil {
		if q.AllowStale {
			v.Set("stale", "")
		}
		if q.WaitIndex > 0 {
			v.Set("index", strconv.FormatUint(q.WaitIndex, 10))
		}
		if q.WaitTime > 0 {
			v.Set("wait", fmt.Sprintf("%dms", q.WaitTime.Milliseconds()))
		}
	}
	u.RawQuery = v.Encode()
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return nil, err
	}
	if r.body != nil && r.size >= 0 {
		req.ContentLength = r.size
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set(HeaderToken, c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return &StatusError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
}

// query does a GET and decodes the answer into out.
func (c *Client) query(ctx context.Context, path string, q *QueryOptions, out any) (*QueryMeta, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: path, query: q})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := decode(resp, out); err != nil {
		return nil, err
	}
	return queryMeta(resp), nil
}

func queryMeta(resp *http.Response) *QueryMeta {
	m := &QueryMeta{}
	m.LastIndex, _ = strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
	m.KnownLeader, _ = strconv.ParseBool(resp.Header.Get(HeaderKnownLeader))
	return m
}

// write sends in (nil: no body) as JSON and decodes the answer into out
// (nil: discarded).
func (c *Client) write(ctx context.Context, method, path string, in, out any) error {
	r := request{method: method, path: path}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode the body of %s %s: %w", method, path, err)
		}
		r.body, r.size = bytes.NewReader(b), int64(len(b))
		r.header = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return decode(resp, out)
}

// decode reads a 200's JSON body into out.
func decode(resp *http.Response, out any) error {
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the answer of %s %s: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
