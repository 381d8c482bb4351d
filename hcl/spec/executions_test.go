package spec_test

import (
	"testing"
	"time"

	"github.com/butterfn/butter/hcl/spec"
)

// TestExecutionsBlock: keep tiers and redacted fields as written; the
// default tiers when the block has no keep; no block, no log.
func TestExecutionsBlock(t *testing.T) {
	p, rep := loadSrc(t, `
function "a" {
  runtime = "exec"
  command = ["cat"]
  executions {
    redact = ["password", "card.number"]
    keep   = { "7d" = "5m", "2h" = "all" }
  }
}
function "b" {
  runtime = "exec"
  command = ["cat"]
  executions {}
}
function "c" {
  runtime = "exec"
  command = ["cat"]
}
`)
	if rep.HasErrors() {
		t.Fatal(rep.Diags)
	}
	a := p.Function("a").Executions
	if a == nil || len(a.Keep) != 2 || a.Keep[0] != (spec.ExecKeep{Age: 2 * time.Hour, DeclRange: a.Keep[0].DeclRange}) ||
		a.Keep[1].Age != 7*24*time.Hour || a.Keep[1].OnePer != 5*time.Minute || len(a.Redact) != 2 || a.Redact[1] != "card.number" {
		t.Errorf("function a's executions: %+v", a)
	}
	b := p.Function("b").Executions
	if b == nil || len(b.Keep) != 3 || b.Keep[2].Age != 30*24*time.Hour || b.Keep[2].OnePer != time.Hour {
		t.Errorf("function b's executions should have the default tiers: %+v", b)
	}
	if p.Function("c").Executions != nil {
		t.Error("function c has no executions block, and an execution log")
	}
}
