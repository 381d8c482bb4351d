package spec

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

var triggerSchemas = map[TriggerType]*hcl.BodySchema{
	TriggerHTTP: {Attributes: []hcl.AttributeSchema{
		{Name: "route", Required: true}, {Name: "auth"}, {Name: "mode"},
	}},
	TriggerCron: {Attributes: []hcl.AttributeSchema{
		{Name: "schedule", Required: true}, {Name: "timezone"},
	}},
	TriggerStream: {Attributes: []hcl.AttributeSchema{
		{Name: "stream", Required: true}, {Name: "offset"}, {Name: "order"},
	}},
}

// Auth modes and invocation modes of http triggers.
var (
	authModes   = []string{"none", "api_key", "jwt"}
	invokeModes = []string{"direct", "queued"}
)

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
