package spec

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Executions turns on a function's execution log (docs/observability.md,
// "Execution log"): each invocation's input, state before and after,
// output, emits, error and duration are recorded, kept as its keep tiers
// say, with the fields Redact names and the function's secrets redacted.
type Executions struct {
	// Keep are the tiers of retention, by increasing age: up to Age, one
	// execution per OnePer (every one when OnePer is 0).
	Keep []ExecKeep
	// Redact names fields of the JSON input, output, emits and state
	// whose values are never recorded: "password", "card.number".
	Redact    []string
	DeclRange hcl.Range
}

// ExecKeep is one tier of an execution log's retention.
type ExecKeep struct {
	Age, OnePer time.Duration
	DeclRange   hcl.Range
}

// DefaultExecKeep is the retention of an executions block without keep:
// every execution for an hour, then one a minute for a day, one an hour
// for 30 days.
var DefaultExecKeep = []ExecKeep{{Age: time.Hour}, {Age: 24 * time.Hour, OnePer: time.Minute}, {Age: 30 * 24 * time.Hour, OnePer: time.Hour}}

// maxExecKeeps bounds the tiers: each is a topic per function.
const maxExecKeeps = 5

var executionsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "redact"}, {Name: "keep"}},
}

const keepHelp = `keep maps an age to how often executions up to that age are kept: "all", or one per a duration, like
  keep = { "1h" = "all", "1d" = "1m", "30d" = "1h" }
(every execution for an hour, then one a minute for a day, one an hour for 30 days).`

func (d *decoder) decodeExecutions(b *hcl.Block) *Executions {
	e := &Executions{DeclRange: b.DefRange}
	content, diags := b.Body.Content(executionsSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["redact"]; a != nil {
		if fields, ok := d.strListOf(a, `a list of field paths, like ["password", "card.number"]`); ok {
			for _, f := range fields {
				if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid redact field", "%q is not a field path: name a field of the JSON values, with dots between levels, like \"card.number\".", f)
					continue
				}
				e.Redact = append(e.Redact, f)
			}
		}
	}
	if a := content.Attributes["keep"]; a != nil {
		e.Keep = d.decodeKeep(a)
	}
	if len(e.Keep) == 0 {
		e.Keep = append([]ExecKeep(nil), DefaultExecKeep...)
	}
	return e
}

// decodeKeep reads keep's map of age to "all" or a duration, in order of
// age.
func (d *decoder) decodeKeep(a *hcl.Attribute) []ExecKeep {
	pairs, diags := hcl.ExprMap(a.Expr)
	if diags.HasErrors() {
		r := a.Expr.Range()
		d.errorf(&r, "Invalid keep", "%s", keepHelp)
		return nil
	}
	var out []ExecKeep
	for _, kv := range pairs {
		kr, vr := kv.Key.Range(), kv.Value.Range()
		ks, kd := kv.Key.Value(nil)
		vs, vd := d.eval(kv.Value)
		if kd.HasErrors() || vd.HasErrors() || ks.Type() != cty.String || vs.Type() != cty.String || ks.IsNull() || vs.IsNull() {
			d.errorf(&kr, "Invalid keep", "%s", keepHelp)
			return nil
		}
		k := ExecKeep{DeclRange: kr}
		var err error
		if k.Age, err = ParseDuration(ks.AsString()); err != nil || k.Age <= 0 {
			d.errorf(&kr, "Invalid keep age", "%q is not a duration such as \"1h\" or \"30d\". %s", ks.AsString(), keepHelp)
			return nil
		}
		if v := vs.AsString(); v != "all" {
			if k.OnePer, err = ParseDuration(v); err != nil || k.OnePer <= 0 {
				d.errorf(&vr, "Invalid keep rate", "%q is neither \"all\" nor a duration such as \"1m\". %s", v, keepHelp)
				return nil
			}
			if k.OnePer >= k.Age {
				d.errorf(&vr, "Invalid keep rate", "one per %s up to %s keeps at most one execution. Keep them more often, or \"all\".", k.OnePer, k.Age)
				return nil
			}
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Age < out[j].Age })
	for i := 1; i < len(out); i++ {
		if out[i].Age == out[i-1].Age {
			r := out[i].DeclRange
			d.errorf(&r, "Duplicate keep age", "Age %s is given twice in keep. %s", out[i].Age, keepHelp)
			return nil
		}
		if out[i].OnePer < out[i-1].OnePer || out[i-1].OnePer != 0 && out[i].OnePer == 0 {
			r := out[i].DeclRange
			d.errorf(&r, "keep finer for older executions", "Up to %s keeps %s, more often than up to %s (%s): an older tier cannot hold executions a younger one dropped. %s", out[i].Age, orEvery(out[i].OnePer), out[i-1].Age, orEvery(out[i-1].OnePer), keepHelp)
			return nil
		}
	}
	if len(out) > maxExecKeeps {
		r := a.Expr.Range()
		d.errorf(&r, "Too many keep tiers", "keep takes at most %d ages; merge some.", maxExecKeeps)
		return nil
	}
	return out
}

// orEvery says a tier's rate in words.
func orEvery(d time.Duration) string {
	if d == 0 {
		return "every execution"
	}
	return fmt.Sprint("one per ", d)
}
