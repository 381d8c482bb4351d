package spec

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

var pipelineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "steps", Required: true}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "trigger", LabelNames: []string{"type"}}},
}

const stepsHelp = "steps is a list of functions or pipelines, each either a reference like function.sed or an object with options like { function = function.sed, options = { e = \"s/hate/love/\" } }."

func (d *decoder) decodePipeline(p pending) {
	pl := d.pipelines[p.block.Labels[0]]
	content, diags := p.block.Body.Content(pipelineSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["steps"]; a != nil {
		exprs, diags := hcl.ExprList(a.Expr)
		if diags.HasErrors() {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid steps", "%s", stepsHelp)
		} else if len(exprs) == 0 {
			r := a.Expr.Range()
			d.errorf(&r, "Empty pipeline", "Pipeline %q has no steps. %s", pl.Name, stepsHelp)
		}
		for _, e := range exprs {
			if s := d.decodeStep(e); s != nil {
				pl.Steps = append(pl.Steps, s)
			}
		}
	}
	for _, b := range content.Blocks {
		if t := d.decodeTrigger(b); t != nil {
			switch t.Type {
			case TriggerStream:
				r := t.DeclRange
				d.errorf(&r, "Stream trigger on a pipeline", "A pipeline answers requests; bind streams to functions. Put the stream trigger on the first function of the pipeline, or use an http trigger.")
				continue
			case TriggerCron:
				// The control plane fires ticks into functions' tick topics
				// (docs/timers.md); nothing runs a pipeline on a tick, so a
				// cron trigger here would be accepted and never fire.
				r := t.DeclRange
				d.errorf(&r, "Cron trigger on a pipeline", "Cron triggers fire functions only: nothing would run pipeline %q on a tick. Put the cron trigger on a function (its output stream can feed the next step's stream trigger), or call the pipeline's http route from a cron function.", pl.Name)
				continue
			}
			pl.Triggers = append(pl.Triggers, t)
		}
	}
}

func (d *decoder) decodeStep(e hcl.Expression) *Step {
	s := &Step{Range: e.Range()}
	var target hcl.Expression = e
	if obj, ok := e.(*hclsyntax.ObjectConsExpr); ok {
		target = nil
		for _, item := range obj.Items {
			key := hcl.ExprAsKeyword(item.KeyExpr)
			r := item.KeyExpr.Range()
			switch key {
			case "function", "pipeline":
				if target != nil {
					d.errorf(&r, "Invalid step", "A step names one function or one pipeline. %s", stepsHelp)
					return nil
				}
				target = item.ValueExpr
			case "options":
				v, diags := item.ValueExpr.Value(nil)
				if diags.HasErrors() {
					d.diags = append(d.diags, diags...)
					return nil
				}
				opts := map[string]string{}
				if !v.Type().IsObjectType() && !v.Type().IsMapType() {
					vr := item.ValueExpr.Range()
					d.errorf(&vr, "Invalid options", "options is a map of strings, like { e = \"s/hate/love/\" }.")
					return nil
				}
				for k, ov := range v.AsValueMap() {
					sv, ok := ctyString(ov)
					if !ok {
						vr := item.ValueExpr.Range()
						d.errorf(&vr, "Invalid options", "The option %q must be a string, number or bool.", k)
						return nil
					}
					opts[k] = sv
				}
				s.Options = opts
			default:
				d.errorf(&r, "Invalid step", "A step object takes function (or pipeline) and options; %q is not one of them.", key)
				return nil
			}
		}
		if target == nil {
			d.errorf(&s.Range, "Invalid step", "The step names no function. %s", stepsHelp)
			return nil
		}
	}
	kind, name, ok := d.ref(target, "steps", "function", "pipeline")
	if !ok {
		return nil
	}
	if kind == "function" {
		s.Function = d.functions[name]
	} else {
		s.Pipeline = d.pipelines[name]
	}
	return s
}
