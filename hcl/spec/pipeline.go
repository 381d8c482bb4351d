package spec

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

var pipelineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "steps", Required: true}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "trigger", LabelNames: []string{"type"}}},
}

const stepsHelp = "steps is a list of functions or pipelines, each either a reference like function.sed or an object with options like { function = function.sed, options = { e = \"s/hate/love/\" } }; an external HTTP function is its URL, \"http://host/path\", or { url = \"http://host/path\", timeout = \"10s\" }."

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
	if isLiteral(e) {
		return d.externalStep(s, e, nil)
	}
	var target, timeout hcl.Expression = e, nil
	targetKey := ""
	if obj, ok := e.(*hclsyntax.ObjectConsExpr); ok {
		target = nil
		for _, item := range obj.Items {
			key := hcl.ExprAsKeyword(item.KeyExpr)
			r := item.KeyExpr.Range()
			switch key {
			case "function", "pipeline", "url":
				if target != nil {
					d.errorf(&r, "Invalid step", "A step names one function, one pipeline or one url. %s", stepsHelp)
					return nil
				}
				target, targetKey = item.ValueExpr, key
			case "timeout":
				timeout = item.ValueExpr
			case "options":
				v, diags := d.eval(item.ValueExpr)
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
				d.errorf(&r, "Invalid step", "A step object takes function (or pipeline) and options, or url and timeout; %q is not one of them.", key)
				return nil
			}
		}
		if target == nil {
			d.errorf(&s.Range, "Invalid step", "The step names no function. %s", stepsHelp)
			return nil
		}
		if isLiteral(target) != (targetKey == "url") {
			r := target.Range()
			d.errorf(&r, "Invalid step", "url takes an external HTTP function's URL, quoted, and function or pipeline a reference without quotes. %s", stepsHelp)
			return nil
		}
		if isLiteral(target) {
			if s.Options != nil {
				d.errorf(&s.Range, "Options on an external step", "An external HTTP function gets the step's input as its request body and no options: put what it needs in its URL's query.")
				return nil
			}
			return d.externalStep(s, target, timeout)
		}
		if timeout != nil {
			r := timeout.Range()
			d.errorf(&r, "Invalid step", "timeout is for external steps (url = ...): a function's timeout is set in its function block.")
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

// isLiteral says whether e is a constant (a quoted string), not a
// reference: an external step's URL.
func isLiteral(e hcl.Expression) bool {
	switch e.(type) {
	case *hclsyntax.TemplateExpr, *hclsyntax.LiteralValueExpr, *hclsyntax.TemplateWrapExpr:
		return len(e.Variables()) == 0
	}
	return false
}

// externalStep decodes an external step: its URL, from e, and its
// timeout, from timeout when set.
func (d *decoder) externalStep(s *Step, e, timeout hcl.Expression) *Step {
	v, diags := d.eval(e)
	r := e.Range()
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		d.errorf(&r, "Invalid step", "A quoted step is an external HTTP function's URL. %s", stepsHelp)
		return nil
	}
	raw := v.AsString()
	if !strings.Contains(raw, "://") {
		d.errorf(&r, "Invalid step", "%q is quoted, so it would be an external HTTP function's URL: to name a function or pipeline, write a reference without quotes, like function.sed. %s", raw, stepsHelp)
		return nil
	}
	if msg := CheckStepURL(raw); msg != "" {
		d.errorf(&r, "Invalid external step", "%q: %s", raw, msg)
		return nil
	}
	s.URL = raw
	s.Timeout, _ = ParseDuration(DefaultTimeout)
	if timeout != nil {
		tr := timeout.Range()
		tv, diags := d.eval(timeout)
		str, ok := "", false
		if !diags.HasErrors() && tv.IsKnown() && !tv.IsNull() && tv.Type() == cty.String {
			str, ok = tv.AsString(), true
		}
		dur, err := ParseDuration(str)
		if !ok || err != nil || dur <= 0 {
			d.errorf(&tr, "Invalid timeout", "The timeout of an external step is a positive duration such as \"10s\" or \"1m30s\".")
			return nil
		}
		s.Timeout = dur
	}
	return s
}

// CheckStepURL says what is wrong with the URL of an external pipeline
// step, or "" when it is one: an absolute http:// or https:// URL with a
// host, no credentials and no fragment. The gateway reads routes' URL
// steps with the same rule.
func CheckStepURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("not a URL (%v): write it as http://host[:port]/path", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "an external step's URL starts with http:// or https://, such as http://gateway.openfaas:8080/function/figlet"
	case u.Host == "" || u.Hostname() == "":
		return "the URL names no host: write it as http://host[:port]/path"
	case u.User != nil:
		return "credentials in the URL would be kept in the spec and the route table: remove them (the gateway sends no credentials to external steps)"
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		return "a fragment (#...) means nothing to a server: remove it"
	case strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "blanks and control characters do not belong in a URL: encode them (%20 for a space)"
	}
	return ""
}
