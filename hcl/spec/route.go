package spec

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/butterfn/butter/names"
)

// The rules that keep a route table whole. The gateway serves every
// project's routes and its own endpoints (names.GatewayPatterns) from one
// Go ServeMux, which refuses the whole table when two patterns match the
// same requests and neither is more specific. So a route must stay off the
// gateway's paths, and must not overlap another route, of its project
// (checked here, in validation) or of another project (checked by the
// control plane when a revision is activated, with RoutesConflict).

// GatewayRoute says why a route ("METHOD /path", as a trigger's route
// reads) cannot be served beside the gateway's own endpoints, or "" when
// it can: its path is the gateway's (/metrics, /v1 and everything under
// /v1/), or Go's ServeMux finds it overlapping one of the gateway's
// endpoints with neither more specific.
func GatewayRoute(route string) string {
	method, path, _ := strings.Cut(route, " ")
	if names.GatewayPath(path) {
		return fmt.Sprintf("the gateway serves %s and every path under %s itself (health, the route list, ad-hoc invocations, async results, metrics)", names.GatewayMetricsPath, names.GatewayAPIPrefix)
	}
	for _, own := range names.GatewayPatterns() {
		om, op, _ := strings.Cut(own, " ")
		if !mayOverlap(method, path, om, op) {
			continue
		}
		if example, ok := muxConflict(method+" "+path, own); ok {
			return fmt.Sprintf("it matches requests such as %s that the gateway's own endpoint %q serves, and neither is more specific", example, own)
		}
	}
	return ""
}

// RoutesConflict says why two routes ("METHOD /path", as triggers' routes
// read) cannot be in one route table, or "" when they can: they match the
// same requests (the same method, or ANY, and the same path up to the
// names of its parameters), or Go's ServeMux, the gateway's router, finds
// that they both match some request and neither is more specific.
func RoutesConflict(a, b string) string {
	why, _ := routesConflict(a, b)
	return why
}

// routesConflict is RoutesConflict; same is true when the two match the
// same requests, not only some.
func routesConflict(a, b string) (why string, same bool) {
	am, ap, _ := strings.Cut(a, " ")
	bm, bp, _ := strings.Cut(b, " ")
	if (am == bm || am == "ANY" || bm == "ANY") && routeShape(ap) == routeShape(bp) {
		return "both match the same requests", true
	}
	if mayOverlap(am, ap, bm, bp) {
		if example, ok := muxConflict(a, b); ok {
			return fmt.Sprintf("both match requests such as %s, and neither is more specific", example), false
		}
	}
	return "", false
}

// mayOverlap is a quick test before muxConflict's exact one: false when
// no request can match both routes, because their methods differ (GET
// also matches HEAD, ANY everything) or one segment is a different
// literal in each path.
func mayOverlap(am, ap, bm, bp string) bool {
	methods := am == bm || am == "ANY" || bm == "ANY" ||
		(am == http.MethodGet && bm == http.MethodHead) || (am == http.MethodHead && bm == http.MethodGet)
	if !methods {
		return false
	}
	as, bs := strings.Split(ap, "/"), strings.Split(bp, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if strings.HasPrefix(x, "{") || strings.HasPrefix(y, "{") {
			if strings.HasSuffix(x, "...}") || strings.HasSuffix(y, "...}") {
				return true // matches the rest of the path
			}
			continue
		}
		if x != y {
			// A trailing slash ends a pattern that matches the subtree.
			return (x == "" && i == len(as)-1) || (y == "" && i == len(bs)-1)
		}
	}
	return true
}

// muxExample picks the example path out of ServeMux's conflict message.
var muxExample = regexp.MustCompile(`like "([^"]*)"`)

// muxConflict registers a and b in a new ServeMux and reports whether the
// mux refuses b because of a, with an example request path both match
// ("some paths" when the mux names none). A pattern the mux refuses on its
// own is no conflict: route syntax is ParseRoute's to check.
func muxConflict(a, b string) (example string, conflict bool) {
	mux := http.NewServeMux()
	if _, ok := register(mux, muxPattern(a)); !ok {
		return "", false
	}
	if _, ok := register(http.NewServeMux(), muxPattern(b)); !ok {
		return "", false
	}
	msg, ok := register(mux, muxPattern(b))
	if ok {
		return "", false
	}
	if m := muxExample.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%q", m[1]), true
	}
	return "some paths", true
}

// register adds pattern to mux; when the mux refuses it (it panics), ok
// is false and refusal is the mux's message.
func register(mux *http.ServeMux, pattern string) (refusal string, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			refusal, ok = fmt.Sprint(p), false
		}
	}()
	mux.HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
	return "", true
}

// muxPattern is a route as a ServeMux pattern: ANY, which matches every
// method, is a pattern without one.
func muxPattern(route string) string {
	if path, ok := strings.CutPrefix(route, "ANY "); ok {
		return path
	}
	return route
}
