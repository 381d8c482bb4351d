package spec_test

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/butterfn/butter/hcl/spec"
)

func loadSrc(t *testing.T, src string) (*spec.Project, *spec.Report) {
	t.Helper()
	return spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(src)}}, "proj")
}

// TestScalingBlock decodes a pool's scaling block, keeps the defaults for
// what it leaves out, and gives a pool without a block the defaults.
func TestScalingBlock(t *testing.T) {
	p, rep := loadSrc(t, `
function "a" {
  runtime = "exec"
  command = ["cat"]
  pool    = "busy"
  trigger "stream" {
    stream = stream.in
  }
}
function "b" {
  runtime = "exec"
  command = ["cat"]
}
stream "in" {}
pool "busy" {
  scaling {
    min            = 0
    max            = 4
    scale_in_delay = "1m"
    target = {
      lag = 50
      cpu = 0.75
    }
  }
}
`)
	if rep.HasErrors() || len(rep.Diags) != 0 {
		t.Fatalf("diagnostics: %v", rep.Diags)
	}
	busy := p.Pools["busy"].Scaling
	if !busy.Enabled || busy.Min != 0 || busy.Max != 4 || busy.ScaleInDelay != time.Minute || busy.Cooldown != spec.DefaultCooldown {
		t.Errorf("busy: %+v", busy)
	}
	if busy.Targets[spec.SignalLag] != 50 || busy.Targets[spec.SignalInFlight] != spec.DefaultTargetInFlight || busy.Targets[spec.SignalCPU] != 0.75 {
		t.Errorf("busy targets: %v", busy.Targets)
	}
	def := p.Pools["default"]
	if def == nil {
		t.Fatalf("no default pool: %v", p.Pools)
	}
	want := spec.DefaultScaling()
	if def.Scaling.Min != want.Min || def.Scaling.Max != want.Max || !def.Scaling.Enabled || def.Scaling.Targets[spec.SignalLag] != spec.DefaultTargetLag {
		t.Errorf("default pool: %+v", def.Scaling)
	}
	if _, ok := def.Scaling.Targets[spec.SignalCPU]; ok {
		t.Errorf("the default pool has a cpu target (it has no default): %v", def.Scaling.Targets)
	}
	if len(p.Pools) != 2 {
		t.Errorf("pools: %v", p.Pools)
	}
}

// TestScalingToZeroWithRoute: a pool with a direct route may scale to
// zero with no warning: the gateway holds its calls while the autoscaler
// wakes it (gateway TestWakeHoldsCalls, autoscaler TestWakeOnNomad).
func TestScalingToZeroWithRoute(t *testing.T) {
	p, rep := loadSrc(t, `
function "a" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /a"
  }
}
pool "default" {
  scaling {
    min = 0
  }
}
`)
	if p == nil || rep.HasErrors() {
		t.Fatalf("refused: %v", rep.Diags)
	}
	if len(rep.Diags) != 0 {
		t.Fatalf("diagnostics: %v", rep.Diags)
	}
	if pl := p.Pools["default"]; pl == nil || pl.Scaling.Min != 0 {
		t.Errorf("pool: %+v", pl)
	}
}

// TestScalingDuplicates refuses a second pool block and a second scaling
// block, each naming the first.
func TestScalingDuplicates(t *testing.T) {
	_, rep := loadSrc(t, `
function "a" {
  runtime = "exec"
  command = ["cat"]
}
pool "default" {
  scaling {}
  scaling {}
}
pool "default" {}
`)
	var got []string
	for _, d := range rep.Diags {
		got = append(got, d.Summary+" @"+d.Subject.String())
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{"Duplicate scaling block @proj/main.fn.hcl:8,3-10", "Duplicate pool name @proj/main.fn.hcl:10,6-15"} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}
