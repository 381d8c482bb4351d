package spec_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

// TestInvalidSpecs loads every project under testdata/invalid and compares
// its diagnostics, as `butter validate` prints them, with the golden file
// beside it. Each project must fail to load.
func TestInvalidSpecs(t *testing.T) {
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			proj, rep := spec.Load(dir)
			if proj != nil || !rep.HasErrors() {
				t.Fatalf("%s loaded without errors; an invalid spec must be rejected", dir)
			}
			for _, d := range rep.Diags {
				if d.Summary == "" || d.Detail == "" {
					t.Errorf("diagnostic without summary or detail: %+v", d)
				}
				if d.Subject == nil && !strings.Contains(dir, "no-spec-files") {
					t.Errorf("diagnostic %q has no position", d.Summary)
				}
			}
			var buf bytes.Buffer
			if err := rep.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(dir, "diagnostics.golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./hcl/spec -run TestInvalidSpecs -update, then review the file)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("diagnostics differ from %s\n--- got\n%s\n--- want\n%s", golden, got, want)
			}

			// The JSON form carries the same diagnostics, with positions.
			buf.Reset()
			if err := rep.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Valid       bool `json:"valid"`
				ErrorCount  int  `json:"error_count"`
				Diagnostics []struct {
					Severity string `json:"severity"`
					Range    *struct {
						Filename string `json:"filename"`
						Start    struct{ Line, Column int }
					} `json:"range"`
				} `json:"diagnostics"`
			}
			if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
				t.Fatalf("JSON output does not parse: %v\n%s", err, buf.String())
			}
			errs, _ := rep.Counts()
			if doc.Valid || doc.ErrorCount != errs || len(doc.Diagnostics) != len(rep.Diags) {
				t.Errorf("JSON says valid=%v errors=%d diagnostics=%d; want false, %d, %d", doc.Valid, doc.ErrorCount, len(doc.Diagnostics), errs, len(rep.Diags))
			}
			for _, d := range doc.Diagnostics {
				if d.Range != nil && (d.Range.Start.Line < 1 || d.Range.Start.Column < 1 || !strings.HasPrefix(d.Range.Filename, dir)) {
					t.Errorf("bad JSON range %+v", d.Range)
				}
			}
		})
	}
	if n < 30 {
		t.Errorf("only %d invalid specs in testdata/invalid; the suite keeps at least 30", n)
	}
}

// TestManyErrorsAllReported checks that decoding goes on past the first
// error: the many-errors project has five independent problems.
func TestManyErrorsAllReported(t *testing.T) {
	_, rep := spec.Load("testdata/invalid/many-errors")
	errs, _ := rep.Counts()
	if errs < 5 {
		var buf bytes.Buffer
		_ = rep.WriteText(&buf)
		t.Fatalf("got %d errors, want at least 5:\n%s", errs, buf.String())
	}
}

func TestExamplesAreValid(t *testing.T) {
	for _, ex := range []string{"hello", "pipeline", "iot"} {
		t.Run(ex, func(t *testing.T) {
			proj, rep := spec.Load(filepath.Join("..", "..", "examples", ex))
			if proj == nil {
				var buf bytes.Buffer
				_ = rep.WriteText(&buf)
				t.Fatalf("example %s is invalid:\n%s", ex, buf.String())
			}
			if len(rep.Diags) != 0 {
				t.Errorf("example %s has %d warnings", ex, len(rep.Diags))
			}
			if proj.Name != ex {
				t.Errorf("project name = %q, want %q", proj.Name, ex)
			}
		})
	}
}

func TestDecodeModel(t *testing.T) {
	proj, rep := spec.Load("../../examples/iot")
	if proj == nil {
		t.Fatalf("%v", rep.Diags)
	}
	detect := proj.Function("detect")
	if detect == nil || detect.Output != proj.Stream("alerts") || detect.DeadLetter != proj.Stream("failed-readings") {
		t.Fatalf("detect's references not resolved: %+v", detect)
	}
	if len(detect.Triggers) != 1 || detect.Triggers[0].Stream != proj.Stream("readings") || detect.Triggers[0].Offset.Kind != spec.OffsetFirst {
		t.Errorf("detect's stream trigger = %+v", detect.Triggers)
	}
	if !detect.Triggers[0].ExactlyOnce {
		t.Errorf("detect's stream trigger is not exactly_once")
	}
	if detect.State == nil || detect.State.Key != "device" || detect.Retry == nil || detect.Retry.Attempts != 3 {
		t.Errorf("detect's state/retry = %+v %+v", detect.State, detect.Retry)
	}
	if r := proj.Stream("readings"); r.Partitions != 6 || r.Retention.Hours() != 7*24 || r.Schema != "schemas/reading.json" {
		t.Errorf("readings = %+v", r)
	}
	nightly := proj.Function("nightly")
	if nightly.Memory != 256 || nightly.Pool != "batch" || nightly.Triggers[0].Timezone != "Europe/Paris" {
		t.Errorf("nightly = %+v", nightly)
	}
	ingest := proj.Function("ingest")
	if tr := ingest.Triggers[0]; tr.Method != "POST" || tr.Path != "/devices/{device}/readings" || tr.Auth != "api_key" {
		t.Errorf("ingest's route = %+v", tr)
	}
	if len(ingest.Emits) != 1 || ingest.Emits[0] != proj.Stream("readings") || detect.Emits != nil {
		t.Errorf("emits: ingest %v, detect %v; want [readings] and none", ingest.Emits, detect.Emits)
	}

	pl, rep := spec.Load("../../examples/pipeline")
	if pl == nil {
		t.Fatalf("%v", rep.Diags)
	}
	shout := pl.Pipeline("shout")
	if len(shout.Steps) != 2 || shout.Steps[0].Function.Name != "sed" || shout.Steps[0].Function.Options["e"] != "s/hate/love/" || shout.Steps[1].Name() != "to-upper" {
		t.Errorf("shout's steps = %+v", shout.Steps)
	}
}

func TestWarningsDoNotFail(t *testing.T) {
	fsys := fstest.MapFS{"loop.fn.hcl": {Data: []byte(`
project "loop" {}
stream "s" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  output  = stream.s
  trigger "stream" {
    stream = stream.s
  }
}
`)}}
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil {
		t.Fatalf("a warning must not reject the project: %v", rep.Diags)
	}
	if _, warns := rep.Counts(); warns != 1 {
		t.Fatalf("got %d warnings, want 1 (function feeds itself)", warns)
	}
}

// TestSandboxOptOutWarns: sandbox = false is accepted with a warning that
// names the file, line and column of the argument; sandbox = true is the
// default and says nothing.
func TestSandboxOptOutWarns(t *testing.T) {
	proj, rep := spec.Load("testdata/warn/sandbox-off")
	if proj == nil {
		t.Fatalf("sandbox = false must not reject the project: %v", rep.Diags)
	}
	if _, warns := rep.Counts(); warns != 1 {
		t.Fatalf("got %d warnings, want 1: %v", warns, rep.Diags)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Warning: Function not sandboxed", "testdata/warn/sandbox-off/main.fn.hcl:6:3", `Function "scan" runs unconfined`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, buf.String())
		}
	}
	for _, f := range proj.Functions {
		if want := f.Name == "scan"; f.NoSandbox != want {
			t.Errorf("function %s: NoSandbox = %v, want %v", f.Name, f.NoSandbox, want)
		}
	}
}

// TestOpenFaaSPathWarns: a route on a path of the OpenFaaS API is
// accepted (a gateway serves that API only with -openfaas) with a
// warning at the route saying what such a gateway does and how to move
// it; a path beside them says nothing.
func TestOpenFaaSPathWarns(t *testing.T) {
	fsys := fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "faas" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /function/f"
  }
  trigger "http" {
    route = "GET /functions/f"
  }
}
`)}}
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil {
		t.Fatalf("a route on /function/ must not reject the project: %v", rep.Diags)
	}
	if _, warns := rep.Counts(); warns != 1 {
		t.Fatalf("got %d warnings, want 1: %v", warns, rep.Diags)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Warning: Route on a path of the OpenFaaS API", "main.fn.hcl:7:", `"POST /function/f" is on a path that a gateway started with -openfaas serves itself`, `"POST /api/function/f"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestParseHelpers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"30s", "30s", true}, {"7d", "168h0m0s", true}, {"1w2d3h", "219h0m0s", true},
		{"1d12h", "36h0m0s", true}, {"5 seconds", "", false}, {"d", "", false}, {"-1s", "", false}, {"", "", false},
	} {
		d, err := spec.ParseDuration(c.in)
		if (err == nil) != c.ok || (c.ok && d.String() != c.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s ok=%v", c.in, d, err, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{{"64", 64, true}, {"512MiB", 512, true}, {"1GiB", 1024, true}, {"100MB", 96, true}, {"1KiB", 0, false}, {"x", 0, false}, {"0", 0, false}} {
		n, err := spec.ParseSizeMiB(c.in)
		if (err == nil) != c.ok || n != c.want {
			t.Errorf("ParseSizeMiB(%q) = %d, %v; want %d ok=%v", c.in, n, err, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		sched, tz string
		ok        bool
	}{
		{"0 3 * * *", "", true}, {"*/10 * * * * *", "", true}, {"@daily", "", true}, {"@every 5m", "", true},
		{"0 3 * * *", "Europe/Paris", true}, {"CRON_TZ=Asia/Tokyo 0 3 * * *", "", true},
		{"0 3 * * *", "Nowhere/Town", false}, {"61 * * * *", "", false}, {"* * * * * * *", "", false},
	} {
		_, err := spec.ParseCron(c.sched, c.tz)
		if (err == nil) != c.ok {
			t.Errorf("ParseCron(%q, %q) error = %v; want ok=%v", c.sched, c.tz, err, c.ok)
		}
	}
	for _, c := range []struct {
		in   string
		kind spec.OffsetKind
		ok   bool
	}{{"first", spec.OffsetFirst, true}, {"latest", spec.OffsetLatest, true}, {"1200", spec.OffsetAt, true}, {"2026-01-02T15:04:05Z", spec.OffsetTime, true}, {"-1", "", false}, {"soon", "", false}} {
		o, err := spec.ParseOffset(c.in)
		if (err == nil) != c.ok || o.Kind != c.kind {
			t.Errorf("ParseOffset(%q) = %+v, %v", c.in, o, err)
		}
	}
}

func TestDeployBlock(t *testing.T) {
	load := func(project string) *spec.Project {
		t.Helper()
		fsys := fstest.MapFS{"p.fn.hcl": {Data: []byte(project + `
function "f" {
  runtime = "exec"
  command = ["cat"]
}
`)}}
		proj, rep := spec.LoadFS(fsys, ".")
		if proj == nil {
			t.Fatalf("%v", rep.Diags)
		}
		return proj
	}
	if got, want := load(`project "p" {}`).Deploy, spec.DefaultDeploy(); got != want {
		t.Errorf("no deploy block: %+v, want the defaults %+v", got, want)
	}
	if d := spec.DefaultDeploy(); d.MinHealthyTime.String() != "5s" || d.HealthyDeadline.String() != "2m0s" || !d.AutoRollback {
		t.Errorf("defaults = %+v, want 5s, 2m, true", d)
	}
	d := load(`project "p" {
  deploy {
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_rollback    = false
  }
}`).Deploy
	if d.MinHealthyTime.String() != "10s" || d.HealthyDeadline.String() != "5m0s" || d.AutoRollback || d.DeclRange.Start.Line != 2 {
		t.Errorf("deploy = %+v", d)
	}
	// An empty block keeps every default.
	if d := load(`project "p" {
  deploy {}
}`).Deploy; d.MinHealthyTime != spec.DefaultMinHealthyTime || d.HealthyDeadline != spec.DefaultHealthyDeadline || !d.AutoRollback {
		t.Errorf("empty deploy block = %+v", d)
	}
}

func TestHTTPTriggerArguments(t *testing.T) {
	fsys := fstest.MapFS{"p.fn.hcl": {Data: []byte(`
project "p" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  timeout = "7s"
  trigger "http" {
    route        = "POST /f"
    auth         = "jwt"
    jwks_url     = "https://auth.example.com/.well-known/jwks.json"
    audience     = "orders"
    issuer       = "https://auth.example.com/"
    max_body     = "64KiB"
    timeout      = "3s"
    rate         = 2.5
    cors_origins = ["https://app.example.com", "http://localhost:3000"]
    mode         = "async"
  }
  trigger "http" {
    route    = "GET /f"
    max_body = 10
    rate     = 100
    burst    = 500
  }
}
function "g" {
  runtime = "exec"
  command = ["cat"]
  timeout = "2s"
}
pipeline "both" {
  steps = [function.f, function.g]
  trigger "http" {
    route = "POST /both"
  }
}
pipeline "nested" {
  steps = [pipeline.both, function.g]
  trigger "http" {
    route = "POST /nested"
  }
  trigger "http" {
    route   = "POST /nested/quick"
    timeout = "1s"
  }
}
`)}}
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil || len(rep.Diags) != 0 {
		t.Fatalf("%v", rep.Diags)
	}
	f := proj.Function("f")
	a, b := f.Triggers[0], f.Triggers[1]
	if a.Auth != "jwt" || a.JWKSURL != "https://auth.example.com/.well-known/jwks.json" || a.Audience != "orders" || a.Issuer != "https://auth.example.com/" {
		t.Errorf("jwt = %q %q %q %q", a.Auth, a.JWKSURL, a.Audience, a.Issuer)
	}
	if a.MaxBody != 64<<10 || a.Timeout.String() != "3s" || a.Rate != 2.5 || a.Burst != 3 || a.Mode != "async" {
		t.Errorf("limits = max_body %d, timeout %v, rate %v, burst %d, mode %s", a.MaxBody, a.Timeout, a.Rate, a.Burst, a.Mode)
	}
	if len(a.CORSOrigins) != 2 || a.CORSOrigins[1] != "http://localhost:3000" {
		t.Errorf("cors = %v", a.CORSOrigins)
	}
	// Defaults: no auth, direct, the function's timeout; a bare size is MiB.
	if b.Auth != "none" || b.Mode != "direct" || b.Timeout.String() != "7s" || b.MaxBody != 10<<20 || b.Rate != 100 || b.Burst != 500 || b.CORSOrigins != nil {
		t.Errorf("second trigger = %+v", b)
	}
	// A pipeline's route defaults to the sum of its steps' timeouts,
	// nested pipelines included.
	if got := proj.Pipeline("both").Triggers[0].Timeout.String(); got != "9s" {
		t.Errorf("both's timeout = %s, want 9s", got)
	}
	nested := proj.Pipeline("nested")
	if got := nested.Triggers[0].Timeout.String(); got != "11s" {
		t.Errorf("nested's timeout = %s, want 11s", got)
	}
	if got := nested.Triggers[1].Timeout.String(); got != "1s" {
		t.Errorf("nested's explicit timeout = %s, want 1s", got)
	}
}

func TestJWKSOverPlainHTTPWarns(t *testing.T) {
	for url, warns := range map[string]int{
		"http://auth.example.com/jwks.json": 1,
		"http://127.0.0.1:8080/jwks.json":   0,
		"http://localhost/jwks.json":        0,
		"https://auth.example.com/jwks":     0,
	} {
		fsys := fstest.MapFS{"p.fn.hcl": {Data: []byte(`
project "p" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route    = "POST /f"
    auth     = "jwt"
    jwks_url = "` + url + `"
    audience = "f"
  }
}
`)}}
		proj, rep := spec.LoadFS(fsys, ".")
		if proj == nil {
			t.Fatalf("%s: %v", url, rep.Diags)
		}
		if _, w := rep.Counts(); w != warns {
			t.Errorf("%s: %d warnings, want %d", url, w, warns)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"10", 10 << 20, true}, {"10MiB", 10 << 20, true}, {"64KiB", 64 << 10, true}, {"512B", 512, true},
		{"1GB", 1e9, true}, {"0", 0, false}, {"0B", 0, false}, {"-1", 0, false}, {"x", 0, false},
		{"99999999999999999", 0, false},
	} {
		n, err := spec.ParseSize(c.in)
		if (err == nil) != c.ok || n != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", c.in, n, err, c.want, c.ok)
		}
	}
}
