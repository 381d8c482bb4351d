package jobs_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"github.com/butterfn/butter/names"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/hashicorp/nomad/api"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

var examples = []string{"hello", "pipeline", "iot"}

func load(t testing.TB, dir string) *spec.Project {
	t.Helper()
	proj, rep := spec.Load(dir)
	if proj == nil {
		var buf bytes.Buffer
		_ = rep.WriteText(&buf)
		t.Fatalf("load %s:\n%s", dir, buf.String())
	}
	return proj
}

func render(t *testing.T, dir, format string) []byte {
	t.Helper()
	c, err := jobs.Compile(load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	b, err := jobs.Render(c.Job, format)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden pins every example's rendered job, in both formats.
func TestGolden(t *testing.T) {
	for _, ex := range examples {
		for _, format := range []string{"hcl", "json"} {
			t.Run(ex+"."+format, func(t *testing.T) {
				got := render(t, filepath.Join("..", "examples", ex), format)
				golden := filepath.Join("testdata", ex+".nomad."+format)
				if *update {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./jobs -update and review the file)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("rendered job differs from %s; if the change is intended, run go test ./jobs -update and review the diff\n--- got\n%s", golden, got)
				}
			})
		}
	}
}

// TestDeterministic renders each example twice, and once more from a copy
// in another directory: the bytes must not change.
func TestDeterministic(t *testing.T) {
	for _, ex := range examples {
		src := filepath.Join("..", "examples", ex)
		cp := filepath.Join(t.TempDir(), "elsewhere", ex)
		if err := os.CopyFS(cp, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"hcl", "json"} {
			a, b, c := render(t, src, format), render(t, src, format), render(t, cp, format)
			if !bytes.Equal(a, b) {
				t.Errorf("%s/%s: two renders differ", ex, format)
			}
			if !bytes.Equal(a, c) {
				t.Errorf("%s/%s: rendering a copy in another directory differs", ex, format)
			}
		}
	}
}

// TestRevisionFollowsContent: a changed source changes the revision and
// the bundle digest; an unchanged tree keeps them.
func TestRevisionFollowsContent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS("../examples/iot")); err != nil {
		t.Fatal(err)
	}
	before, err := jobs.Compile(load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "functions", "ingest", "index.js")
	if err := os.WriteFile(f, []byte("exports.handle = async (x) => x;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := jobs.Compile(load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if before.Revision == after.Revision {
		t.Error("revision unchanged after the ingest source changed")
	}
	changed := 0
	for i := range before.Artifacts {
		if before.Artifacts[i].Digest != after.Artifacts[i].Digest {
			changed++
			if before.Artifacts[i].Path != "functions/ingest" {
				t.Errorf("digest of %s changed, but only functions/ingest did", before.Artifacts[i].Path)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d artifact digests changed, want 1", changed)
	}
}

func TestCompileShape(t *testing.T) {
	c, err := jobs.Compile(load(t, "../examples/iot"), jobs.WithBlobURL("http://blobs.example:4750/v1/blobs/"), jobs.WithGitSHA("abc123-dirty"), jobs.WithDatacenters("dc1"))
	if err != nil {
		t.Fatal(err)
	}
	job := c.Job
	if *job.ID != "butter-iot" || job.Meta[names.MetaProject] != "iot" || job.Meta[names.MetaRevision] != c.Revision || job.Meta[names.MetaGitSHA] != "abc123-dirty" {
		t.Errorf("job identity/meta = %s %v", *job.ID, job.Meta)
	}
	if len(job.Datacenters) != 1 || job.Datacenters[0] != "dc1" {
		t.Errorf("datacenters = %v", job.Datacenters)
	}
	// Two pools: batch (nightly) and default (ingest, detect).
	if len(job.TaskGroups) != 2 || *job.TaskGroups[0].Name != "batch" || *job.TaskGroups[1].Name != "default" {
		t.Fatalf("groups = %d", len(job.TaskGroups))
	}
	def := job.TaskGroups[1]
	task := def.Tasks[0]
	if task.Driver != "butter" {
		t.Errorf("driver = %q", task.Driver)
	}
	fns := task.Config["function"].([]map[string]any)
	if len(fns) != 2 || fns[0]["name"] != "detect" || fns[1]["name"] != "ingest" {
		t.Fatalf("functions = %v", fns)
	}
	stream := fns[0]["stream"].([]map[string]any)[0]
	if stream["stream"] != "iot.readings" || stream["offset"] != "first" || stream["group"] != "butter.iot.detect.readings" {
		t.Errorf("detect's stream trigger = %v", stream)
	}
	if fns[0]["output"] != "iot.alerts" || fns[0]["dead_letter"] != "iot.failed-readings" {
		t.Errorf("detect output = %v, dead letter = %v", fns[0]["output"], fns[0]["dead_letter"])
	}
	// ingest keeps one warm instance and detect consumes a stream; nightly,
	// in batch, consumes its tick topic: neither group may scale to zero
	// allocations, since Nomad cannot wake a pool on Kafka lag.
	if *def.Scaling.Min != 1 || *job.TaskGroups[0].Scaling.Min != 1 {
		t.Errorf("scaling min: default=%d batch=%d", *def.Scaling.Min, *job.TaskGroups[0].Scaling.Min)
	}
	// nightly's cron trigger becomes one stream block on its tick topic,
	// and every pool creates the tick topic with one partition.
	batch := job.TaskGroups[0].Tasks[0].Config
	nightly := batch["function"].([]map[string]any)[0]
	ticks, _ := nightly["stream"].([]map[string]any)
	if len(ticks) != 1 || ticks[0]["stream"] != "iot._timers.nightly" || ticks[0]["group"] != "butter.iot.nightly._timers" || ticks[0]["offset"] != "first" {
		t.Errorf("nightly's tick trigger = %v", ticks)
	}
	for _, tg := range job.TaskGroups {
		topics := tg.Tasks[0].Config["topic"].([]map[string]any)
		last := topics[len(topics)-1]
		if len(topics) != 5 || last["name"] != "iot._timers.nightly" || last["partitions"] != 1 || last["compact"] != nil {
			t.Errorf("group %s: topics = %v", *tg.Name, topics)
		}
	}
	svc := def.Services[0]
	if svc.Provider != "nomad" || svc.PortLabel != jobs.PortLabel || svc.Name != "butter-iot-default" {
		t.Errorf("service = %+v", svc)
	}
	if len(def.Networks) != 1 || def.Networks[0].DynamicPorts[0].Label != jobs.PortLabel {
		t.Errorf("network = %+v", def.Networks)
	}
	// Artifacts: two bundles and the reading schema, each by hash, with
	// the blob URL's trailing slash trimmed.
	if len(task.Artifacts) != 3 {
		t.Fatalf("artifacts = %d, want 3", len(task.Artifacts))
	}
	for _, a := range task.Artifacts {
		sum := a.GetterOptions["checksum"]
		if !strings.HasPrefix(sum, "sha256:") || !strings.HasSuffix(*a.GetterSource, "/v1/blobs/sha256/"+strings.TrimPrefix(sum, "sha256:")) || strings.Contains(*a.GetterSource, "blobs//") {
			t.Errorf("artifact %s checksum %s", *a.GetterSource, sum)
		}
	}
	if *task.KillTimeout < 2e9 {
		t.Errorf("kill_timeout %v is shorter than the longest function timeout", *task.KillTimeout)
	}
	// Every group rolls out one allocation at a time on its checks, with
	// the deploy block's defaults, fails fast, and leaves rollback to the
	// control plane.
	for _, tg := range job.TaskGroups {
		u := tg.Update
		if u == nil || *u.MaxParallel != 1 || *u.HealthCheck != "checks" || *u.MinHealthyTime != 5*time.Second ||
			*u.HealthyDeadline != 2*time.Minute || *u.ProgressDeadline != 0 || *u.AutoRevert {
			t.Errorf("group %s: update = %+v", *tg.Name, u)
		}
	}
	if job.Meta[names.MetaAutoRollback] != "true" {
		t.Errorf("meta %s = %q, want \"true\"", names.MetaAutoRollback, job.Meta[names.MetaAutoRollback])
	}
}

// TestDeployBlockReachesTheJob: the project's deploy block sets every
// group's update block and the job's rollback meta; a function whose
// timeout passes Nomad's default progress deadline still gives a job Nomad
// accepts, since progress_deadline is 0.
func TestDeployBlockReachesTheJob(t *testing.T) {
	fsys := fstest.MapFS{"p.fn.hcl": {Data: []byte(`
project "p" {
  deploy {
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_rollback    = false
  }
}
function "slow" {
  runtime = "exec"
  command = ["cat"]
  timeout = "20m"
}
`)}}
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	c, err := jobs.Compile(proj, jobs.WithFS(fsys))
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Job.TaskGroups[0]
	u := tg.Update
	if *u.MinHealthyTime != 10*time.Second || *u.HealthyDeadline != 5*time.Minute || *u.ProgressDeadline != 0 || *u.AutoRevert {
		t.Errorf("update = %+v", u)
	}
	if c.Job.Meta[names.MetaAutoRollback] != "false" {
		t.Errorf("meta %s = %q, want \"false\"", names.MetaAutoRollback, c.Job.Meta[names.MetaAutoRollback])
	}
	if kt := *tg.Tasks[0].KillTimeout; kt != 20*time.Minute+5*time.Second {
		t.Errorf("kill_timeout = %v, want 20m5s", kt)
	}
	hcl, err := jobs.RenderHCL(c.Job)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`progress_deadline = "0s"`, `min_healthy_time  = "10s"`, `healthy_deadline  = "5m0s"`, `auto_revert       = false`, `butter_auto_rollback = "false"`} {
		if !bytes.Contains(hcl, []byte(want)) {
			t.Errorf("rendered HCL lacks %s:\n%s", want, hcl)
		}
	}
}

// TestRenderEscapes: values that look like HCL templates or need quoting
// come through intact in both formats.
func TestRenderEscapes(t *testing.T) {
	job := api.NewServiceJob("x", "x", "", 0)
	job.Meta = map[string]string{"tricky": "${NOMAD_ALLOC_ID} \"quoted\" %{ if } \\ \n"}
	b, err := jobs.RenderHCL(job)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"$${NOMAD_ALLOC_ID} \"quoted\" %%{ if } \\ \n"`)) {
		t.Errorf("meta not escaped:\n%s", b)
	}
	j, err := jobs.RenderJSON(job)
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Job api.Job }
	if err := json.Unmarshal(j, &back); err != nil || back.Job.Meta["tricky"] != job.Meta["tricky"] {
		t.Errorf("JSON round trip: %v %q", err, back.Job.Meta["tricky"])
	}
}

func TestTimers(t *testing.T) {
	fsys := fstest.MapFS{"p.fn.hcl": {Data: []byte(`
project "shop" {}
stream "orders" {}
function "report" {
  runtime = "exec"
  command = ["./report.sh"]
  trigger "cron" {
    schedule = "0 3 * * *"
    timezone = "Europe/Paris"
  }
  trigger "http" {
    route = "POST /report"
  }
  trigger "cron" {
    schedule = "@every 1h"
  }
}
function "audit" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream = stream.orders
  }
  trigger "cron" {
    schedule = "*/10 * * * * *"
  }
}
function "plain" {
  runtime = "exec"
  command = ["cat"]
}
`)}}
	proj, rep := spec.LoadFS(fsys, ".")
	if proj == nil {
		t.Fatal(rep.Diags)
	}
	got := jobs.Timers(proj)
	want := []jobs.Timer{
		{ID: "shop.audit.0", Function: "audit", Schedule: "*/10 * * * * *", Topic: "shop._timers.audit"},
		{ID: "shop.report.0", Function: "report", Schedule: "0 3 * * *", Timezone: "Europe/Paris", Topic: "shop._timers.report"},
		{ID: "shop.report.1", Function: "report", Schedule: "@every 1h", Topic: "shop._timers.report"},
	}
	if len(got) != len(want) {
		t.Fatalf("Timers = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("timer %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if g := names.TimerGroup("shop", "report"); g != "butter.shop.report._timers" {
		t.Errorf("names.TimerGroup = %q", g)
	}
	// A tick topic never equals a stream's topic: stream names hold no
	// dots and start with a letter.
	if strings.Count(names.TimerTopic("shop", "report"), ".") != 2 || strings.Count(names.Topic("shop", "orders"), ".") != 1 {
		t.Error("tick topics and stream topics must differ in their dots")
	}

	c, err := jobs.Compile(proj, jobs.WithFS(fsys))
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Job.TaskGroups[0].Tasks[0].Config
	fns := cfg["function"].([]map[string]any)
	// audit: its stream, then its tick topic; report: one tick topic for
	// both cron triggers; plain: none.
	audit, plain, report := fns[0]["stream"].([]map[string]any), fns[1]["stream"], fns[2]["stream"].([]map[string]any)
	if len(audit) != 2 || audit[0]["stream"] != "shop.orders" || audit[1]["stream"] != "shop._timers.audit" || audit[1]["group"] != "butter.shop.audit._timers" {
		t.Errorf("audit's streams = %v", audit)
	}
	if plain != nil {
		t.Errorf("plain's streams = %v", plain)
	}
	if len(report) != 1 || report[0]["stream"] != "shop._timers.report" || report[0]["offset"] != "first" {
		t.Errorf("report's streams = %v", report)
	}
	var names []string
	for _, tp := range cfg["topic"].([]map[string]any) {
		names = append(names, tp["name"].(string))
	}
	if strings.Join(names, " ") != "shop.orders shop._timers.audit shop._timers.report" {
		t.Errorf("topics = %v", names)
	}
}

// TestOpenAPIArtifacts: a project's OpenAPI documents are blobs of its
// revision, uploaded as single files (IsSchema) and marked IsOpenAPI, but
// no task fetches them: only the gateway reads them. A changed document
// changes the revision.
func TestOpenAPIArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "openapi")
	if err := os.CopyFS(dir, os.DirFS("../hcl/spec/testdata/valid/openapi")); err != nil {
		t.Fatal(err)
	}
	before, err := jobs.Compile(load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, a := range before.Artifacts {
		if !a.IsOpenAPI {
			t.Errorf("artifact %s is not an OpenAPI document; the project has nothing else to bundle", a.Path)
			continue
		}
		if !a.IsSchema || !strings.HasPrefix(string(a.Digest), "sha256:") {
			t.Errorf("artifact %+v: want a single file with a sha256 digest", a)
		}
		docs = append(docs, a.Path)
	}
	if strings.Join(docs, " ") != "api/devices.yaml api/reports.json" {
		t.Errorf("OpenAPI artifacts = %v", docs)
	}
	for _, tg := range before.Job.TaskGroups {
		if n := len(tg.Tasks[0].Artifacts); n != 0 {
			t.Errorf("group %s fetches %d artifacts; the OpenAPI documents are the gateway's", *tg.Name, n)
		}
	}
	js, err := jobs.RenderJSON(before.Job)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("devices.yaml")) || bytes.Contains(js, []byte("reports.json")) {
		t.Errorf("the job mentions an OpenAPI document:\n%s", js)
	}

	doc := filepath.Join(dir, "api", "devices.yaml")
	src, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(doc, bytes.Replace(src, []byte("x-butter-rate: 50"), []byte("x-butter-rate: 60"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := jobs.Compile(load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if before.Revision == after.Revision {
		t.Error("revision unchanged after an OpenAPI document changed")
	}
	if before.Artifacts[0].Digest == after.Artifacts[0].Digest || before.Artifacts[1].Digest != after.Artifacts[1].Digest {
		t.Errorf("digests before %v, after %v: only devices.yaml changed", before.Artifacts, after.Artifacts)
	}
}

// TestMQTTWithoutAddressRefused: examples/mqtt's connectors name no
// broker, which only butter dev provides; CheckDeployable (what deploys to
// Nomad calls) refuses it naming each connector and what to write, while
// Compile, which butter dev records revisions through, compiles it.
func TestMQTTWithoutAddressRefused(t *testing.T) {
	p := load(t, filepath.Join("..", "examples", "mqtt"))
	err := jobs.CheckDeployable(p)
	if err == nil || !strings.Contains(err.Error(), `sink "mqtt" "alerts-out" and source "mqtt" "readings-in" declare no address`) || !strings.Contains(err.Error(), `address = "tcp://<host>:1883"`) {
		t.Fatalf("CheckDeployable(examples/mqtt): %v, want the address-less connectors refused", err)
	}
	if _, err := jobs.Compile(p); err != nil {
		t.Errorf("Compile(examples/mqtt): %v", err)
	}
	for _, ex := range examples {
		if err := jobs.CheckDeployable(load(t, filepath.Join("..", "examples", ex))); err != nil {
			t.Errorf("examples/%s: %v", ex, err)
		}
	}
}
