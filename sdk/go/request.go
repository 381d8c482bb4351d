package butter

import (
	"encoding/json"
	"net/textproto"
	"net/url"
)

// Request is the HTTP request a call came from (docs/gateway.md,
// "Headers"): nil, from Call.Request, for an event that did not come
// from HTTP (a stream event, a tick).
type Request struct {
	// Method and Path are the request's; Route is the pattern of the
	// route that matched it ("GET /items/{id}"), empty for a call
	// through the pool's endpoint or an ad-hoc pipeline.
	Method, Path, Route string
	// Params are the path parameters and the query parameters
	// (Call.Params; names lower-case).
	Params map[string]string
	// RawQuery is the query without "?"; Query is it parsed.
	RawQuery string
	Query    url.Values
	// Header holds the request's headers but the hop-by-hop ones and
	// the credentials (Authorization, Proxy-Authorization, Cookie,
	// X-API-Key), which the gateway leaves out; a repeated header's
	// values come joined by ", ".
	Header textproto.MIMEHeader
	// RemoteAddr is the client's address as the gateway saw it
	// (host:port).
	RemoteAddr string
	// RequestID is the call's X-Request-Id, Traceparent its W3C trace
	// context.
	RequestID, Traceparent string
}

// Request returns the HTTP request the call came from, or nil when it did
// not come from HTTP.
func (c *Call) Request() *Request {
	m := c.Meta
	method := m["ce_httpmethod"]
	if method == "" {
		return nil
	}
	r := &Request{Method: method, Path: m["ce_httppath"], Route: m["ce_httproute"], Params: c.Params,
		RawQuery: m["ce_httpquery"], Header: textproto.MIMEHeader{}, RemoteAddr: m["ce_httpremoteaddr"],
		RequestID: m["ce_id"], Traceparent: m["ce_traceparent"]}
	r.Query, _ = url.ParseQuery(r.RawQuery)
	var hs map[string]string
	_ = json.Unmarshal([]byte(m["ce_httpheaders"]), &hs)
	for k, v := range hs {
		r.Header.Set(k, v)
	}
	return r
}

// SetStatus sets the status of the answer to an HTTP call (200 when never
// set). Like Header, it counts only when the handler returns without an
// error: an error answers with its type's status (docs/events.md, "Error
// types"). It does nothing for an event that did not come from HTTP, and
// with a pool older than protocol 3.
func (c *Call) SetStatus(code int) { c.status = code }

// Header returns the headers of the answer to an HTTP call, to set before
// the handler returns: Header().Add("Set-Cookie", ...) for a header with
// several values. Connection headers, Content-Length, X-Request-Id and
// Butter-* are the platform's and are dropped.
func (c *Call) Header() textproto.MIMEHeader {
	if c.header == nil {
		c.header = textproto.MIMEHeader{}
	}
	return c.header
}

// head is the call's HEAD payload, or nil when the handler set neither
// status nor headers, or the pool predates HEAD.
func (c *Call) head() []byte {
	if (c.status == 0 && len(c.header) == 0) || c.w == nil || c.w.protocol < 3 {
		return nil
	}
	b, err := json.Marshal(struct {
		Status  int                 `json:"status,omitempty"`
		Headers map[string][]string `json:"headers,omitempty"`
	}{c.status, c.header})
	if err != nil {
		return nil
	}
	return b
}
