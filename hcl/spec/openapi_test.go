package spec_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/hashicorp/hcl/v2"
)

// TestOpenAPIRoutes loads testdata/valid/openapi: two documents, one YAML
// (OpenAPI 3.0) and one JSON (3.1), whose operations become http triggers
// of the functions and the pipeline their operationIds name, with the
// x-butter-* extensions as the trigger's arguments.
func TestOpenAPIRoutes(t *testing.T) {
	proj, rep := spec.Load("testdata/valid/openapi")
	if proj == nil {
		var buf bytes.Buffer
		_ = rep.WriteText(&buf)
		t.Fatalf("the project does not load:\n%s", buf.String())
	}
	if got := strings.Join(proj.OpenAPI, " "); got != "api/devices.yaml api/reports.json" {
		t.Errorf("OpenAPI = %q", got)
	}

	// get-device: the document's root says api_key and rate 50; the
	// operation overrides auth and sets a timeout.
	get := proj.Function("get-device").Triggers
	if len(get) != 1 {
		t.Fatalf("get-device has %d triggers, want 1: %+v", len(get), get)
	}
	g := get[0]
	if g.Type != spec.TriggerHTTP || g.Route() != "GET /devices/{device}" || g.Auth != "none" || g.Mode != "direct" ||
		g.Timeout != 3*time.Second || g.Rate != 50 || g.Burst != 50 || g.MaxBody != 0 {
		t.Errorf("get-device's route = %+v", g)
	}
	if g.OpenAPI != "api/devices.yaml" || g.OperationID != "get-device" {
		t.Errorf("origin = %q %q", g.OpenAPI, g.OperationID)
	}
	// The route points at the document's entry in the openapi list.
	if r := g.RouteRange; r.Filename != "testdata/valid/openapi/main.fn.hcl" || r.Start.Line != 5 || r.Start.Column != 5 {
		t.Errorf("RouteRange = %s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
	}

	// put-reading: its trigger block first, then the document's route
	// with the root's auth and rate and its own limits; the timeout is
	// the function's.
	put := proj.Function("put-reading").Triggers
	if len(put) != 2 || put[0].Route() != "GET /health" || put[0].OpenAPI != "" {
		t.Fatalf("put-reading's triggers = %+v", put)
	}
	p := put[1]
	if p.Route() != "POST /devices/{device}/readings" || p.Auth != "api_key" || p.Mode != "async" || p.MaxBody != 64<<10 ||
		p.Rate != 50 || p.Burst != 80 || p.Timeout != 2*time.Second || len(p.CORSOrigins) != 1 || p.CORSOrigins[0] != "https://app.example.com" {
		t.Errorf("put-reading's route = %+v", p)
	}

	// report, a pipeline: JWT from the JSON document; the timeout is the
	// sum of its steps'.
	rt := proj.Pipeline("report").Triggers
	if len(rt) != 1 {
		t.Fatalf("report has %d triggers", len(rt))
	}
	r := rt[0]
	if r.Route() != "POST /reports/{day}" || r.Auth != "jwt" || r.JWKSURL != "https://auth.example.com/.well-known/jwks.json" ||
		r.Audience != "reports" || r.Timeout != 10*time.Second || r.OpenAPI != "api/reports.json" {
		t.Errorf("report's route = %+v", r)
	}
	if r.RouteRange.Start.Line != 6 {
		t.Errorf("report's RouteRange starts on line %d, want 6", r.RouteRange.Start.Line)
	}

	// listDevices is ignored, /version has no operationId: neither is
	// routed. put-readings names nothing: one warning, with a suggestion
	// and the document's line.
	if proj.Function("render").Triggers != nil || proj.Function("summarize").Triggers != nil {
		t.Error("functions no operation names got routes")
	}
	if len(rep.Diags) != 1 {
		t.Fatalf("%d diagnostics, want 1 warning: %v", len(rep.Diags), rep.Diags)
	}
	w := rep.Diags[0]
	if w.Severity != hcl.DiagWarning || w.Subject == nil || w.Subject.Start.Line != 5 ||
		!strings.Contains(w.Detail, `"put-readings" (GET /devices/{device}/readings, testdata/valid/openapi/api/devices.yaml:45)`) ||
		!strings.Contains(w.Detail, `Did you mean "put-reading"?`) {
		t.Errorf("warning = %s: %s (at %v)", w.Summary, w.Detail, w.Subject)
	}
}

func loadOpenAPI(t *testing.T, doc string) (*spec.Project, *spec.Report) {
	t.Helper()
	fsys := fstest.MapFS{
		"p.fn.hcl": {Data: []byte(`
project "p" {
  openapi = ["openapi.yaml"]
}
function "f" {
  runtime = "exec"
  command = ["cat"]
}
`)},
		"openapi.yaml": {Data: []byte(doc)},
	}
	return spec.LoadFS(fsys, ".")
}

// TestOpenAPISecurityWarns: an operation the document secures, routed
// without x-butter-auth, would be open; Load warns unless the security is
// optional or the auth is explicit.
func TestOpenAPISecurityWarns(t *testing.T) {
	const head = `openapi: 3.0.3
info: {title: t, version: "1"}
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-Key}
`
	const op = `paths:
  /f:
    post:
      operationId: f
      responses: {"200": {description: ok}}
`
	for _, c := range []struct {
		name, doc string
		warns     int
		auth      string
	}{
		{"root security", head + "security: [{key: []}]\n" + op, 1, "none"},
		{"operation security", head + strings.Replace(op, "      operationId: f\n", "      operationId: f\n      security: [{key: []}]\n", 1), 1, "none"},
		{"security lifted by the operation", head + "security: [{key: []}]\n" + strings.Replace(op, "      operationId: f\n", "      operationId: f\n      security: []\n", 1), 0, "none"},
		{"optional security", head + "security: [{key: []}, {}]\n" + op, 0, "none"},
		{"explicit none", head + "security: [{key: []}]\nx-butter-auth: none\n" + op, 0, "none"},
		{"api_key", head + "security: [{key: []}]\nx-butter-auth: api_key\n" + op, 0, "api_key"},
		{"no security", head + op, 0, "none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			proj, rep := loadOpenAPI(t, c.doc)
			if proj == nil {
				t.Fatalf("%v", rep.Diags)
			}
			if _, w := rep.Counts(); w != c.warns {
				t.Errorf("%d warnings, want %d: %v", w, c.warns, rep.Diags)
			} else if c.warns == 1 && !strings.Contains(rep.Diags[0].Detail, "the route is open to anyone") {
				t.Errorf("warning = %s", rep.Diags[0].Detail)
			}
			tr := proj.Function("f").Triggers
			if len(tr) != 1 || tr[0].Auth != c.auth {
				t.Errorf("triggers = %+v, want one with auth %q", tr, c.auth)
			}
		})
	}
}

// TestOpenAPIExtensionErrors: the extensions' values go through the http
// trigger's checks, and the diagnostics name the operation.
func TestOpenAPIExtensionErrors(t *testing.T) {
	for ext, want := range map[string]string{
		"x-butter-auth: apikey":         `Did you mean "api_key"?`,
		"x-butter-timeout: soon":        `The argument "x-butter-timeout" takes a duration`,
		"x-butter-max-body: huge":       `takes a size`,
		"x-butter-rate: -1":             `rate is requests per second`,
		"x-butter-burst: 5":             `this route has no rate limit`,
		"x-butter-cors-origins: {a: b}": `The argument "x-butter-cors-origins" takes a list of origins`,
		"x-butter-auth: jwt":            `add jwks_url`,
		"x-butter-audience: a":          `Set auth = "jwt", or remove audience`,
		"x-butter-ignore: maybe":        `The argument "x-butter-ignore" takes true or false`,
		"x-butter-timout: 3s":           `Did you mean x-butter-timeout?`,
	} {
		t.Run(ext, func(t *testing.T) {
			proj, rep := loadOpenAPI(t, `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /f:
    post:
      operationId: f
      `+ext+`
      responses: {"200": {description: ok}}
`)
			if proj != nil {
				t.Fatalf("loaded with %s", ext)
			}
			found := false
			for _, d := range rep.Diags {
				if d.Severity == hcl.DiagError && strings.Contains(d.Detail, want) {
					found = true
					if !strings.HasPrefix(d.Detail, `Operation "f" (POST /f, openapi.yaml:5)`) {
						t.Errorf("the detail does not name the operation: %s", d.Detail)
					}
					if d.Subject == nil || d.Subject.Filename != "p.fn.hcl" || d.Subject.Start.Line != 3 {
						t.Errorf("subject = %v, want the openapi entry in p.fn.hcl:3", d.Subject)
					}
				}
			}
			if !found {
				t.Errorf("no error containing %q: %v", want, rep.Diags)
			}
		})
	}
}

// TestNoOpenAPI: a project without documents has no OpenAPI routes and
// an empty list.
func TestNoOpenAPI(t *testing.T) {
	proj, rep := spec.Load("../../examples/pipeline")
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	if proj.OpenAPI != nil {
		t.Errorf("OpenAPI = %v", proj.OpenAPI)
	}
	for _, pl := range proj.Pipelines {
		for _, tr := range pl.Triggers {
			if tr.OpenAPI != "" || tr.OperationID != "" {
				t.Errorf("trigger %s has an OpenAPI origin", tr.Route())
			}
		}
	}
}

func TestOpenAPIExtensionsList(t *testing.T) {
	got := strings.Join(spec.OpenAPIExtensions(), " ")
	want := "x-butter-audience x-butter-auth x-butter-burst x-butter-cors-origins x-butter-ignore x-butter-issuer x-butter-jwks-url x-butter-max-body x-butter-mode x-butter-rate x-butter-timeout"
	if got != want {
		t.Errorf("OpenAPIExtensions() = %s", got)
	}
}

// FuzzOpenAPI feeds arbitrary bytes to the decoder as a project's OpenAPI
// document: loading must never panic, and a rejected project must say why.
func FuzzOpenAPI(f *testing.F) {
	for _, p := range []string{"testdata/valid/openapi/api/devices.yaml", "testdata/valid/openapi/api/reports.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("openapi: 3.0.3\ninfo: {title: t, version: \"1\"}\npaths:\n  /f/{x}:\n    post: {operationId: f, x-butter-rate: 1e400, x-butter-burst: [1], responses: {\"200\": {description: ok}}}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		proj, rep := spec.LoadFS(fstest.MapFS{
			"p.fn.hcl": {Data: []byte(`
project "p" {
  openapi = ["openapi.yaml"]
}
function "f" {
  runtime = "exec"
  command = ["cat"]
}
`)},
			"openapi.yaml": {Data: doc},
		}, ".")
		if proj == nil {
			for _, d := range rep.Diags {
				if d.Severity == hcl.DiagError && (d.Summary == "" || d.Detail == "") {
					t.Fatalf("error without summary or detail: %+v", d)
				}
			}
			if !rep.HasErrors() {
				t.Fatal("no project and no error")
			}
		}
	})
}
