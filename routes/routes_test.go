package routes_test

import (
	"bytes"
	"github.com/butterfn/butter/names"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/gateway"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/routes"
	"github.com/hashicorp/go-hclog"
)

func load(t *testing.T, fsys fstest.MapFS) *spec.Project {
	t.Helper()
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil || len(rep.Diags) != 0 {
		var buf bytes.Buffer
		_ = rep.WriteText(&buf)
		t.Fatalf("the project does not load cleanly:\n%s", buf.String())
	}
	return proj
}

const project = `
project "shop" {
  openapi = ["api/openapi.yaml"]
}

function "orders" {
  runtime = "exec"
  command = ["cat"]
  pool    = "web"
  timeout = "3s"

  trigger "http" {
    route    = "POST /orders"
    auth     = "api_key"
    max_body = "1MiB"
    rate     = 5
    mode     = "queued"
  }
  trigger "cron" {
    schedule = "@hourly"
  }
}

function "sed" {
  runtime = "exec"
  command = ["sed", "-u"]
  options = { e = "s/a/b/" }
  timeout = "2s"
}

function "upper" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  pool    = "batch"
  timeout = "4s"
}

pipeline "inner" {
  steps = [function.upper, { function = function.sed, options = { e = "s/x y/z/" } }]
}

pipeline "shout" {
  steps = [
    { function = function.sed, options = { e = "s/hate/love/", n = "" } },
    pipeline.inner,
  ]

  trigger "http" {
    route        = "POST /shout"
    cors_origins = ["https://app.example.com"]
  }
}
`

const document = `openapi: 3.0.3
info: {title: Shop, version: "1"}
paths:
  /orders/{order}:
    parameters:
      - {name: order, in: path, required: true, schema: {type: string}}
    get:
      operationId: orders
      x-butter-auth: api_key
      x-butter-timeout: 1s
      responses:
        "200": {description: The order.}
  /shout/{word}:
    parameters:
      - {name: word, in: path, required: true, schema: {type: string}}
    put:
      operationId: shout
      x-butter-mode: async
      responses:
        "202": {description: Accepted.}
`

func shop(t *testing.T) *spec.Project {
	return load(t, fstest.MapFS{
		"shop.fn.hcl":      {Data: []byte(project)},
		"api/openapi.yaml": {Data: []byte(document)},
	})
}

// TestFromSpec: one route per http trigger, written in a trigger block
// or coming from an OpenAPI document, with the trigger's settings; cron
// triggers make none; pipelines are flattened with their options and the
// pool of each function.
func TestFromSpec(t *testing.T) {
	got := routes.FromSpec(shop(t), "rev1")
	var patterns []string
	for _, r := range got {
		patterns = append(patterns, r.Pattern())
	}
	if want := "GET /orders/{order} POST /orders POST /shout PUT /shout/{word}"; strings.Join(patterns, " ") != want {
		t.Fatalf("patterns = %v, want %s", patterns, want)
	}
	byPattern := map[string]gateway.Route{}
	for _, r := range got {
		if r.Project != "shop" || r.Revision != "rev1" {
			t.Errorf("%s: project %q revision %q", r.Pattern(), r.Project, r.Revision)
		}
		byPattern[r.Pattern()] = r
	}

	// A function's trigger block.
	want := gateway.Route{
		Method: "POST", Path: "/orders", Project: "shop", Revision: "rev1",
		Function: "orders", Pool: "web", Auth: "api_key", MaxBody: 1 << 20,
		Timeout: 3 * time.Second, Rate: 5, Burst: 5, Mode: "queued",
	}
	if r := byPattern["POST /orders"]; !reflect.DeepEqual(r, want) {
		t.Errorf("POST /orders =\n%+v, want\n%+v", r, want)
	}

	// A function's route from the OpenAPI document.
	want = gateway.Route{
		Method: "GET", Path: "/orders/{order}", Project: "shop", Revision: "rev1",
		Function: "orders", Pool: "web", Auth: "api_key", Timeout: time.Second, Mode: "direct",
	}
	if r := byPattern["GET /orders/{order}"]; !reflect.DeepEqual(r, want) {
		t.Errorf("GET /orders/{order} =\n%+v, want\n%+v", r, want)
	}

	// A pipeline: the nested pipeline is flattened, each step keeps its
	// options (quoted when they hold spaces or are empty), the route's
	// pool is its first function's, and Pools places every function.
	// The default timeout is the sum of the steps' (2s + 4s + 2s).
	steps := []string{`sed e=s/hate/love/ n=""`, "upper", `sed e="s/x y/z/"`}
	pools := map[string]string{"sed": "default", "upper": "batch"}
	want = gateway.Route{
		Method: "POST", Path: "/shout", Project: "shop", Revision: "rev1",
		Pipeline: steps, Pool: "default", Pools: pools, Auth: "none",
		Timeout: 8 * time.Second, CORSOrigins: []string{"https://app.example.com"}, Mode: "direct",
	}
	if r := byPattern["POST /shout"]; !reflect.DeepEqual(r, want) {
		t.Errorf("POST /shout =\n%+v, want\n%+v", r, want)
	}
	// The same pipeline, routed by the OpenAPI document.
	want.Method, want.Path, want.CORSOrigins, want.Mode = "PUT", "/shout/{word}", nil, "async"
	if r := byPattern["PUT /shout/{word}"]; !reflect.DeepEqual(r, want) {
		t.Errorf("PUT /shout/{word} =\n%+v, want\n%+v", r, want)
	}

	if s, p := routes.Flatten(shop(t).Pipeline("inner")); !reflect.DeepEqual(s, steps[1:]) || !reflect.DeepEqual(p, pools) {
		t.Errorf("Flatten(inner) = %v %v", s, p)
	}
}

func TestPlacement(t *testing.T) {
	proj := shop(t)
	place := routes.Placement(func(name string) *spec.Project {
		if name == "shop" {
			return proj
		}
		return nil
	})
	for _, c := range []struct {
		project, function, pool string
		ok                      bool
	}{
		{"shop", "orders", "web", true}, {"shop", "sed", "default", true},
		{"shop", "nosuch", "", false}, {"other", "orders", "", false},
	} {
		if pool, ok := place(c.project, c.function); pool != c.pool || ok != c.ok {
			t.Errorf("Placement(%s, %s) = %q %v, want %q %v", c.project, c.function, pool, ok, c.pool, c.ok)
		}
	}
}

// TestOpenAPIRouteServes puts the routes of a project whose only route
// comes from an OpenAPI document into a real gateway, in front of a stub
// pool: a request to the document's path reaches the function the
// operationId names, with the path parameter.
func TestOpenAPIRouteServes(t *testing.T) {
	proj := load(t, fstest.MapFS{
		"p.fn.hcl": {Data: []byte(`
project "test" {
  openapi = ["openapi.json"]
}
function "echo" {
  runtime = "exec"
  command = ["cat"]
}
`)},
		"openapi.json": {Data: []byte(`{
  "openapi": "3.1.0",
  "info": {"title": "Echo", "version": "1"},
  "paths": {"/echo/{name}": {"post": {
    "operationId": "echo",
    "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "The body, back."}}
  }}}
}`)},
	})
	type call struct{ path, param, body string }
	calls := make(chan call, 1)
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- call{r.URL.Path, r.Header.Get(names.HeaderParamPrefix + "name"), string(b)}
		_, _ = w.Write(bytes.ToUpper(b))
	}))
	defer stub.Close()
	res := gateway.NewStaticResolver()
	res.Set("test", "default", stub.Listener.Addr().String())
	g := gateway.New(res, gateway.WithLogger(hclog.NewNullLogger()))
	defer g.Close()
	if err := g.SetRoutes(routes.FromSpec(proj, "r1")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/echo/butter", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "HELLO" {
		t.Fatalf("POST /echo/butter: %d %q, want 200 \"HELLO\"", resp.StatusCode, body)
	}
	if c := <-calls; c.path != "/v1/invoke/echo" || c.param != "butter" || c.body != "hello" {
		t.Errorf("the pool got %+v", c)
	}
	// The document routes POST only.
	resp, err = http.Get(srv.URL + "/echo/butter")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /echo/butter: %d, want 405", resp.StatusCode)
	}
}

// TestExternalStepRoute: a pipeline's external steps reach the gateway's
// route as their URL and timeout, the default timeout of its route counts
// theirs, and the gateway takes the route.
func TestExternalStepRoute(t *testing.T) {
	proj := load(t, fstest.MapFS{"main.fn.hcl": {Data: []byte(`
function "up" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  timeout = "2s"
}

pipeline "figlet" {
  steps = [
    function.up,
    "http://faas.example.com:8080/function/figlet?font=big",
    { url = "https://faas.example.com/function/wc", timeout = "3s" },
  ]
  trigger "http" {
    route = "POST /figlet"
  }
}
`)}})
	rs := routes.FromSpec(proj, "rev1")
	if len(rs) != 1 {
		t.Fatalf("routes: %+v", rs)
	}
	def, err := spec.ParseDuration(spec.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"up", "http://faas.example.com:8080/function/figlet?font=big timeout=" + def.String(), "https://faas.example.com/function/wc timeout=3s"}
	if r := rs[0]; !reflect.DeepEqual(r.Pipeline, want) || r.Pool != "default" || !reflect.DeepEqual(r.Pools, map[string]string{"up": "default"}) {
		t.Errorf("route: %+v, want pipeline %q, pool default", r, want)
	}
	if got := rs[0].Timeout; got != 2*time.Second+def+3*time.Second {
		t.Errorf("route timeout %s, want 2s + %s + 3s", got, def)
	}
	g := gateway.New(gateway.NewStaticResolver())
	defer g.Close()
	if err := g.SetRoutes(rs); err != nil {
		t.Errorf("the gateway refused the route: %v", err)
	}
}

// TestMiddlewareRoutes: the project's middleware reach every route but
// those whose trigger sets its own (or none, with []), in order, each
// middleware placed in its pool; the gateway takes the routes.
func TestMiddlewareRoutes(t *testing.T) {
	proj := load(t, fstest.MapFS{"api/openapi.yaml": {Data: []byte(`openapi: 3.0.3
info: {title: Shop, version: "1"}
paths:
  /orders/{order}:
    parameters:
      - {name: order, in: path, required: true, schema: {type: string}}
    put:
      operationId: orders
      responses:
        "200": {description: The order.}
`)}, "main.fn.hcl": {Data: []byte(`
project "shop" {
  middleware = [function.auth, function.audit]
  openapi    = ["api/openapi.yaml"]
}

function "auth" {
  runtime = "http"
  command = ["./auth"]
  pool    = "edge"
}

function "audit" {
  runtime = "http"
  command = ["./audit"]
}

function "orders" {
  runtime = "exec"
  command = ["cat"]
  pool    = "web"
  trigger "http" {
    route = "POST /orders"
  }
  trigger "http" {
    route      = "GET /orders"
    middleware = [function.audit]
  }
  trigger "http" {
    route      = "GET /health"
    middleware = []
  }
}

pipeline "shout" {
  steps = [function.orders]
  trigger "http" {
    route = "POST /shout"
  }
}
`)}})
	byPattern := map[string]gateway.Route{}
	for _, r := range routes.FromSpec(proj, "rev1") {
		byPattern[r.Pattern()] = r
	}
	for pattern, want := range map[string]struct {
		mw    []string
		pools map[string]string
	}{
		"POST /orders": {[]string{"auth", "audit"}, map[string]string{"auth": "edge", "audit": "default"}},
		"GET /orders":  {[]string{"audit"}, map[string]string{"audit": "default"}},
		"GET /health":  {nil, nil},
		// A route from the OpenAPI document gets the project's.
		"PUT /orders/{order}": {[]string{"auth", "audit"}, map[string]string{"auth": "edge", "audit": "default"}},
		"POST /shout":         {[]string{"auth", "audit"}, map[string]string{"orders": "web", "auth": "edge", "audit": "default"}},
	} {
		r := byPattern[pattern]
		if !reflect.DeepEqual(r.Middleware, want.mw) || !reflect.DeepEqual(r.Pools, want.pools) {
			t.Errorf("%s: middleware %q pools %v, want %q %v", pattern, r.Middleware, r.Pools, want.mw, want.pools)
		}
	}
	g := gateway.New(gateway.NewStaticResolver())
	defer g.Close()
	if err := g.SetRoutes(routes.FromSpec(proj, "rev1")); err != nil {
		t.Errorf("the gateway refused the routes: %v", err)
	}
}

// TestJSONRoutes: a route takes JSON when its function (a pipeline's
// first) declares an input_schema, and answers JSON when it (the last)
// declares an output_schema, so that the gateway may convert CBOR and
// MessagePack.
func TestJSONRoutes(t *testing.T) {
	schema := &fstest.MapFile{Data: []byte(`{"type": "object"}`)}
	proj := load(t, fstest.MapFS{"in.json": schema, "out.json": schema, "main.fn.hcl": {Data: []byte(`
function "parse" {
  runtime      = "exec"
  command      = ["cat"]
  input_schema = "in.json"
  trigger "http" {
    route = "POST /parse"
  }
}

function "render" {
  runtime       = "exec"
  command       = ["cat"]
  output_schema = "out.json"
}

pipeline "inner" {
  steps = [function.render]
}

pipeline "both" {
  steps = [function.parse, pipeline.inner]
  trigger "http" {
    route = "POST /both"
  }
}

pipeline "external" {
  steps = [function.parse, "http://faas.example.com/function/render"]
  trigger "http" {
    route = "POST /external"
  }
}
`)}})
	for _, r := range routes.FromSpec(proj, "rev1") {
		want := map[string][2]bool{"POST /parse": {true, false}, "POST /both": {true, true}, "POST /external": {true, false}}[r.Pattern()]
		if [2]bool{r.JSONInput, r.JSONOutput} != want {
			t.Errorf("%s: JSON input %v, output %v; want %v", r.Pattern(), r.JSONInput, r.JSONOutput, want)
		}
	}
}
