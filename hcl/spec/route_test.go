package spec

import (
	"strings"
	"testing"
)

// TestRoutesConflict: routes the gateway's ServeMux cannot hold together
// conflict, and routes it routes apart do not.
func TestRoutesConflict(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want string // a part of the reason, or "" for no conflict
	}{
		{"POST /orders", "POST /orders", "the same requests"},
		{"GET /orders/{id}", "GET /orders/{order}", "the same requests"},
		{"ANY /orders", "DELETE /orders", "the same requests"},
		{"GET /{tenant}/orders", "GET /shop/{order}", `"/shop/orders", and neither is more specific`},
		{"HEAD /{x}", "GET /metrics", "neither is more specific"},
		{"GET /a/", "GET /{x}/b", "neither is more specific"},
		{"POST /orders", "GET /orders", ""},
		{"GET /orders/{id}", "GET /orders/mine", ""}, // the literal is more specific
		{"GET /orders", "GET /devices", ""},
		{"GET /{rest...}", "GET /orders", ""},
		{"GET /a/b", "GET /a/b/c", ""},
	} {
		got := RoutesConflict(c.a, c.b)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("RoutesConflict(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
		if back := RoutesConflict(c.b, c.a); (back == "") != (got == "") {
			t.Errorf("RoutesConflict is not symmetric on %q and %q: %q and %q", c.a, c.b, got, back)
		}
	}
}

// TestMayOverlap: the quick test never hides a conflict ServeMux finds,
// over every pair of a set of routes that exercises methods, literals,
// parameters, rest parameters and trailing slashes.
func TestMayOverlap(t *testing.T) {
	paths := []string{"/", "/a", "/a/", "/a/b", "/a/{x}", "/{x}", "/{x}/", "/{x}/b", "/a/{x...}", "/{x...}", "/a/b/c", "/{x}/b/{y}", "/metrics", "/v1/invocations/{id}"}
	methods := []string{"GET", "HEAD", "POST", "ANY"}
	var routes []string
	for _, m := range methods {
		for _, p := range paths {
			routes = append(routes, m+" "+p)
		}
	}
	n := 0
	for _, a := range routes {
		for _, b := range routes {
			_, conflict := muxConflict(a, b)
			if conflict {
				n++
			}
			am, ap, _ := strings.Cut(a, " ")
			bm, bp, _ := strings.Cut(b, " ")
			if conflict && !mayOverlap(am, ap, bm, bp) {
				t.Errorf("mayOverlap(%q, %q) is false, but ServeMux refuses them together", a, b)
			}
		}
	}
	if n == 0 {
		t.Fatal("no pair conflicts: the test checks nothing")
	}
}

// TestGatewayRoute: the gateway's own paths, and paths its endpoints
// cannot be told apart from, are refused; others are not.
func TestGatewayRoute(t *testing.T) {
	for route, refused := range map[string]bool{
		"GET /metrics":                     true,
		"POST /metrics":                    true,
		"GET /v1":                          true,
		"POST /v1/orders":                  true,
		"GET /v1/routes":                   true,
		"GET /{tenant}/invocations/latest": true,
		"POST /{tenant}/invoke/x":          true,
		"GET /metrics/{name}":              false,
		"GET /api/v1/orders":               false,
		"GET /v1x":                         false,
		"GET /{name}":                      false, // /metrics is more specific, so it stays the gateway's
		"GET /{tenant}/health":             false,
	} {
		if got := GatewayRoute(route) != ""; got != refused {
			t.Errorf("GatewayRoute(%q) refused = %v, want %v (%q)", route, got, refused, GatewayRoute(route))
		}
	}
}
