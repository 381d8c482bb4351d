package spec

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var triggerSchemas = map[TriggerType]*hcl.BodySchema{
	TriggerHTTP: {Attributes: []hcl.AttributeSchema{
		{Name: "route", Required: true}, {Name: "auth"}, {Name: "mode"},
		{Name: "jwks_url"}, {Name: "audience"}, {Name: "issuer"},
		{Name: "max_body"}, {Name: "timeout"}, {Name: "rate"}, {Name: "burst"},
		{Name: "cors_origins"}, {Name: "middleware"},
	}},
	TriggerCron: {Attributes: []hcl.AttributeSchema{
		{Name: "schedule", Required: true}, {Name: "timezone"},
	}},
	TriggerStream: {Attributes: []hcl.AttributeSchema{
		{Name: "stream", Required: true}, {Name: "offset"}, {Name: "order"},
		{Name: "exactly_once"},
	}},
}

// Auth modes and invocation modes of http triggers.
var (
	authModes   = []string{"none", "api_key", "jwt"}
	invokeModes = []string{"direct", "queued", "async"}
)

// maxRate bounds an http trigger's rate, in requests per second.
const maxRate = 1_000_000

func (d *decoder) decodeTrigger(b *hcl.Block) *Trigger {
	typ := TriggerType(b.Labels[0])
	schema, ok := triggerSchemas[typ]
	if !ok {
		lr := b.LabelRanges[0]
		detail := fmt.Sprintf("%q is not a trigger type. Use trigger \"http\", trigger \"cron\" or trigger \"stream\".", typ)
		if s := suggest(string(typ), []string{"http", "cron", "stream"}); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		if typ == "kafka" || typ == "topic" {
			detail += " Kafka topics are streams in Butter: declare stream \"name\" {} and use trigger \"stream\" { stream = stream.name }."
		}
		d.errorf(&lr, "Unknown trigger type", "%s", detail)
		return nil
	}
	t := &Trigger{Type: typ, DeclRange: b.DefRange}
	content, diags := b.Body.Content(schema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	switch typ {
	case TriggerHTTP:
		t.Auth, t.Mode = "none", "direct"
		if attr := a["route"]; attr != nil {
			t.RouteRange = attr.Expr.Range()
			if s, ok := d.str(attr); ok {
				if m, p, err := ParseRoute(s); err != nil {
					r := attr.Expr.Range()
					d.errorf(&r, "Invalid route", "%v. A route is \"METHOD /path\", like \"POST /devices/{device}/readings\"; the method is one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or ANY.", err)
				} else {
					t.Method, t.Path = m, p
				}
			}
		}
		if attr := a["auth"]; attr != nil {
			t.Auth = d.oneOf(attr, authModes, "none")
		}
		if attr := a["mode"]; attr != nil {
			t.Mode = d.oneOf(attr, invokeModes, "direct")
		}
		d.decodeHTTPLimits(t, a)
		if attr := a["middleware"]; attr != nil {
			if mw, ok := d.decodeMiddleware(attr); ok {
				t.Middleware = mw
				d.ownMiddleware[t] = true
			}
		}
	case TriggerCron:
		if attr := a["timezone"]; attr != nil {
			if tz, ok := d.str(attr); ok {
				if _, err := ParseCron("@daily", tz); err != nil {
					r := attr.Expr.Range()
					d.errorf(&r, "Unknown time zone", "%q is not a time zone of the IANA database. Use a name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\".", tz)
					return nil
				}
				t.Timezone = tz
			}
		}
		if attr := a["schedule"]; attr != nil {
			if s, ok := d.str(attr); ok {
				if _, err := ParseCron(s, t.Timezone); err != nil {
					r := attr.Expr.Range()
					d.errorf(&r, "Invalid cron schedule", "%q: %v. A schedule has five fields (minute hour day-of-month month day-of-week), or six with a leading seconds field, like \"0 3 * * *\" or \"*/10 * * * * *\"; @hourly, @daily and @every 5m work too. Set a time zone with timezone = \"Europe/Paris\".", s, err)
				} else {
					t.Schedule = s
				}
			}
		}
	case TriggerStream:
		t.Offset = Offset{Kind: OffsetLatest}
		t.Order = "partition"
		if attr := a["order"]; attr != nil {
			t.Order = d.oneOf(attr, []string{"partition", "key"}, "partition")
		}
		if attr := a["exactly_once"]; attr != nil {
			if on, ok := d.boolean(attr); ok && on {
				t.ExactlyOnce, t.ExactlyOnceRange = true, attr.Range
			}
		}
		if attr := a["stream"]; attr != nil {
			if _, name, ok := d.ref(attr.Expr, "stream", "stream"); ok {
				t.Stream = d.streams[name]
			}
		}
		if attr := a["offset"]; attr != nil {
			if s, ok := d.scalarString(attr, "\"first\", \"latest\", an offset number, or an RFC 3339 time"); ok {
				if o, err := ParseOffset(s); err != nil {
					r := attr.Expr.Range()
					d.errorf(&r, "Invalid offset", "%v. offset takes \"first\", \"latest\", an offset such as 1200, or an RFC 3339 time such as \"2026-01-02T15:04:05Z\". It applies only while the function's consumer group has no committed offset.", err)
				} else {
					t.Offset = o
				}
			}
		}
	}
	return t
}

func (d *decoder) oneOf(attr *hcl.Attribute, allowed []string, def string) string {
	s, ok := d.str(attr)
	if !ok {
		return def
	}
	for _, v := range allowed {
		if v == s {
			return s
		}
	}
	r := attr.Expr.Range()
	detail := fmt.Sprintf("%q is not allowed for %s. Use one of: %s.", s, attr.Name, strings.Join(allowed, ", "))
	if sug := suggest(s, allowed); sug != "" {
		detail += fmt.Sprintf(" Did you mean %q?", sug)
	}
	d.errorf(&r, "Invalid value for "+attr.Name, "%s", detail)
	return def
}

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.\.\.)?$`)

// ParseRoute splits "METHOD /path" and checks the path: it starts with '/',
// and each {param} is a whole segment with a unique name; {rest...} may
// end the path and matches the remaining segments.
func ParseRoute(route string) (method, p string, err error) {
	fields := strings.Fields(route)
	if len(fields) != 2 {
		return "", "", fmt.Errorf("%q is not \"METHOD /path\"", route)
	}
	method, p = strings.ToUpper(fields[0]), fields[1]
	if !httpMethods[method] {
		return "", "", fmt.Errorf("%q is not an HTTP method", fields[0])
	}
	if !strings.HasPrefix(p, "/") {
		return "", "", fmt.Errorf("the path %q does not start with '/'", p)
	}
	seen := map[string]bool{}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if !strings.ContainsAny(seg, "{}") {
			continue
		}
		if !strings.HasPrefix(seg, "{") || !strings.HasSuffix(seg, "}") {
			return "", "", fmt.Errorf("the segment %q mixes a {parameter} with text; a parameter is a whole segment", seg)
		}
		name := seg[1 : len(seg)-1]
		if !paramRE.MatchString(name) {
			return "", "", fmt.Errorf("the parameter %q is not a valid name", seg)
		}
		if strings.HasSuffix(name, "...") && i != len(segs)-1 {
			return "", "", fmt.Errorf("the parameter %q matches the rest of the path, so it must come last", seg)
		}
		name = strings.TrimSuffix(name, "...")
		if seen[name] {
			return "", "", fmt.Errorf("the parameter {%s} appears twice", name)
		}
		seen[name] = true
	}
	return method, p, nil
}

// routeShape is the path with parameter names erased: two routes with the
// same method and shape match the same requests.
func routeShape(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			if strings.HasSuffix(s, "...}") {
				segs[i] = "{...}"
			} else {
				segs[i] = "{}"
			}
		}
	}
	return strings.Join(segs, "/")
}

// decodeHTTPLimits decodes what the gateway enforces on an http route
// besides the route itself: JWT settings, body size, deadline, rate limit
// and CORS.
func (d *decoder) decodeHTTPLimits(t *Trigger, a hcl.Attributes) {
	// JWT: jwks_url and audience are required with auth = "jwt", and
	// none of the three arguments means anything without it.
	if attr := a["jwks_url"]; attr != nil {
		if s, ok := d.str(attr); ok {
			if err := checkJWKSURL(s); err != nil {
				r := attr.Expr.Range()
				d.errorf(&r, "Invalid jwks_url", "%v. jwks_url is the http(s) URL of the JSON Web Key Set that signs the tokens, like \"https://auth.example.com/.well-known/jwks.json\".", err)
			} else {
				t.JWKSURL = s
				if u, _ := url.Parse(s); u.Scheme == "http" && !isLoopback(u.Hostname()) {
					r := attr.Expr.Range()
					d.warnf(&r, "Signing keys over plain HTTP", "The gateway fetches the keys that verify tokens from %s without TLS: anyone on the way can swap the keys and forge tokens. Use an https:// URL.", s)
				}
			}
		}
	}
	for _, name := range []string{"audience", "issuer"} {
		attr := a[name]
		if attr == nil {
			continue
		}
		s, ok := d.str(attr)
		if !ok {
			continue
		}
		if s == "" {
			r := attr.Expr.Range()
			d.errorf(&r, "Empty "+name, "%s is the %q claim a token must carry, like %q; it cannot be empty.", name, map[string]string{"audience": "aud", "issuer": "iss"}[name], map[string]string{"audience": "orders-api", "issuer": "https://auth.example.com/"}[name])
			continue
		}
		if name == "audience" {
			t.Audience = s
		} else {
			t.Issuer = s
		}
	}
	authWritten := ""
	if attr := a["auth"]; attr != nil {
		if v, diags := d.eval(attr.Expr); !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			authWritten = v.AsString()
		}
	}
	switch {
	case a["auth"] != nil && authWritten != t.Auth:
		// auth itself is invalid and reported: checking the JWT
		// arguments against its default would only add noise.
	case t.Auth == "jwt":
		r := t.DeclRange
		if attr := a["auth"]; attr != nil {
			r = attr.Expr.Range()
		}
		if a["jwks_url"] == nil {
			d.errorf(&r, "Missing jwks_url", "auth = \"jwt\" checks each token's signature against a JSON Web Key Set: add jwks_url = \"https://auth.example.com/.well-known/jwks.json\" to the trigger.")
		}
		if a["audience"] == nil {
			d.errorf(&r, "Missing audience", "auth = \"jwt\" accepts only tokens issued for this API: add audience = \"...\", the \"aud\" claim the tokens carry.")
		}
	default:
		for _, name := range []string{"jwks_url", "audience", "issuer"} {
			if attr := a[name]; attr != nil {
				r := attr.NameRange
				d.errorf(&r, "Unexpected "+name, "%s applies to JWT authentication, and this route's auth is %q. Set auth = \"jwt\", or remove %s.", name, t.Auth, name)
			}
		}
	}

	if attr := a["max_body"]; attr != nil {
		if s, ok := d.scalarString(attr, "a size, like \"10MiB\" or \"64KiB\" (a bare number is MiB)"); ok {
			if n, err := ParseSize(s); err != nil {
				r := attr.Expr.Range()
				d.errorf(&r, "Invalid size", "The argument \"max_body\" takes a size, like \"10MiB\" or \"64KiB\" (a bare number is MiB): %v. Leave it out for no limit.", err)
			} else {
				t.MaxBody = n
			}
		}
	}
	if attr := a["timeout"]; attr != nil {
		if v, ok := d.duration(attr); ok {
			if v <= 0 {
				r := attr.Expr.Range()
				d.errorf(&r, "Invalid timeout", "A route's timeout must be longer than zero, like \"10s\"; leave it out to use the function's timeout.")
			} else {
				t.Timeout = v
			}
		}
	}
	rateOK := true
	if attr := a["rate"]; attr != nil {
		rateOK = false
		if v, ok := d.value(attr, cty.Number, "a number of requests per second, like 100 or 0.5"); ok {
			f, _ := v.AsBigFloat().Float64()
			if f < 0 || f > maxRate {
				r := attr.Expr.Range()
				d.errorf(&r, "Value out of range", "rate is requests per second on this route, between 0 (no limit) and %d; it is %s.", maxRate, v.AsBigFloat().Text('g', 10))
			} else {
				rateOK = true
				t.Rate = f
				t.Burst = int(math.Ceil(f))
			}
		}
	}
	if attr := a["burst"]; attr != nil {
		if n, ok := d.integer(attr, 1, 10*maxRate); ok && rateOK {
			r := attr.NameRange
			switch {
			case a["rate"] == nil:
				d.errorf(&r, "Burst without a rate", "burst is how many requests above the rate the route absorbs at once, and this route has no rate limit. Add rate = <requests per second>, or remove burst.")
			case t.Rate == 0:
				d.errorf(&r, "Burst without a rate", "rate = 0 turns the route's rate limit off, so burst has nothing to apply to. Set a rate above 0, or remove burst.")
			default:
				t.Burst = n
			}
		}
	}
	if attr := a["cors_origins"]; attr != nil {
		if list, ok := d.strListOf(attr, "a list of origins, like [\"https://app.example.com\"], or [\"*\"] for any origin"); ok {
			r := attr.Expr.Range()
			// Point at the offending element when the list is written
			// out.
			elems, diags := hcl.ExprList(attr.Expr)
			elemRange := func(i int) *hcl.Range {
				if diags.HasErrors() || len(elems) != len(list) {
					return &r
				}
				er := elems[i].Range()
				return &er
			}
			seen := map[string]bool{}
			valid := true
			for i, o := range list {
				if err := checkOrigin(o); err != nil {
					d.errorf(elemRange(i), "Invalid CORS origin", "%v. cors_origins lists origins as scheme://host[:port], like [\"https://app.example.com\"], or [\"*\"] for any origin.", err)
					valid = false
					continue
				}
				if seen[o] {
					d.errorf(elemRange(i), "Duplicate CORS origin", "%q is listed twice in cors_origins; remove one.", o)
					valid = false
				}
				seen[o] = true
			}
			if seen["*"] && len(list) > 1 {
				d.errorf(&r, "Wildcard with other origins", "\"*\" already allows every origin, so the other entries of cors_origins have no effect. Keep [\"*\"] alone, or list the origins without it.")
				valid = false
			}
			if valid {
				t.CORSOrigins = list
			}
		}
	}
}

// checkJWKSURL checks that s is an absolute http(s) URL without
// credentials (specs live in git; secrets never go in them).
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries credentials, and secrets never go in a spec", s)
	}
	return nil
}

// checkOrigin checks a CORS origin: "*", or scheme://host[:port] exactly
// as browsers send it in the Origin header (no path, no trailing slash).
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an origin", o)
	}
	if strings.Contains(u.Host, "*") {
		return fmt.Errorf("%q uses a wildcard inside the host; list each origin, or use \"*\" alone", o)
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
		return fmt.Errorf("%q is not an origin: an origin has no path, query or trailing slash (browsers send %q)", o, u.Scheme+"://"+u.Host)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
