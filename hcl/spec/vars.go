package spec

import (
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Variables: a spec's `variable` blocks, set by a values file, -var and
// BUTTER_VAR_* (the CLI's), read through var.NAME in any argument. They
// keep what differs between deployments (a broker's address, a database's
// DSN) out of the specs kept in git, as Nomad's and Terraform's input
// variables do.

// ValuesFile is the file in a project's root whose arguments set its
// variables, like Terraform's terraform.tfvars. A revision records the
// values it was deployed with under this name among its specs, so that
// every later load of the revision (the gateway's routes, `butter diff`)
// sees the same values.
const ValuesFile = "butter.vars.hcl"

// EnvPrefix prefixes the environment variables that set a spec's
// variables: BUTTER_VAR_mqtt sets var.mqtt. The CLI reads them
// (VarsFromEnv); LoadFS does not, so that a long-running server's
// environment never changes a revision it loads.
const EnvPrefix = "BUTTER_VAR_"

// Var is one declared variable with the value the project was loaded
// with, in its string form (numbers and bools as HCL writes them).
type Var struct {
	Name        string
	Value       string
	Type        string // "string", "number" or "bool"
	Description string
	// Set is where the value came from: "default", ValuesFile, or the
	// source given in LoadOptions (for example "-var").
	Set string
}

// LoadOption changes how a project is loaded.
type LoadOption func(*loadOptions)

type loadOptions struct {
	vars []VarValue
}

// VarValue is a value given for a variable from outside the specs, with
// where it came from for diagnostics ("-var", "BUTTER_VAR_mqtt", a
// -var-file's name).
type VarValue struct {
	Name, Value, From string
	// Optional values name variables that need not be declared (the
	// environment's, which may be meant for another project).
	Optional bool
	// Range is where a values file sets it, nil for other sources.
	Range *hcl.Range
}

// WithVars sets variables; later values of a name win over earlier ones,
// and all of them over the values file and the defaults.
func WithVars(v ...VarValue) LoadOption {
	return func(o *loadOptions) { o.vars = append(o.vars, v...) }
}

// VarsFromEnv returns the BUTTER_VAR_* variables of environ (os.Environ()
// when nil), as optional values.
func VarsFromEnv(environ []string) []VarValue {
	if environ == nil {
		environ = os.Environ()
	}
	var out []VarValue
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if name, found := strings.CutPrefix(k, EnvPrefix); ok && found && name != "" {
			out = append(out, VarValue{Name: name, Value: v, From: k, Optional: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ParseVarFlag splits a -var argument, NAME=VALUE.
func ParseVarFlag(s string) (VarValue, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return VarValue{}, fmt.Errorf("%q is not NAME=VALUE: write -var NAME=VALUE, for example -var mqtt=tcp://127.0.0.1:1883", s)
	}
	return VarValue{Name: name, Value: value, From: "-var"}, nil
}

// ReadVarFile reads a values file (NAME = value lines in HCL, the form of
// ValuesFile) given with -var-file.
func ReadVarFile(path string) ([]VarValue, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals, diags := parseValues(hclparse.NewParser(), src, path)
	if diags.HasErrors() {
		return nil, diags
	}
	return vals, nil
}

// parseValues reads a values file's arguments as strings.
func parseValues(parser *hclparse.Parser, src []byte, name string) ([]VarValue, hcl.Diagnostics) {
	f, diags := parser.ParseHCL(src, name)
	if diags.HasErrors() {
		return nil, diags
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		for _, d := range diags {
			d.Detail += " A values file holds only NAME = value arguments, one per variable."
		}
		return nil, diags
	}
	var out []VarValue
	for _, a := range attrs {
		v, vd := a.Expr.Value(nil)
		if vd.HasErrors() {
			return nil, explainConstants(vd)
		}
		s, err := primitiveString(v)
		if err != nil {
			r := a.Expr.Range()
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid variable value", Subject: &r,
				Detail: fmt.Sprintf("The value of %s %s: variables take a string, a number or a bool.", a.Name, err)}}
		}
		r := a.NameRange
		out = append(out, VarValue{Name: a.Name, Value: s, From: name, Range: &r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func primitiveString(v cty.Value) (string, error) {
	if v.IsNull() || !v.IsWhollyKnown() || !v.Type().IsPrimitiveType() {
		return "", fmt.Errorf("is %s", v.Type().FriendlyName())
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", err
	}
	return s.AsString(), nil
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "default"}, {Name: "type"}, {Name: "description"}},
}

// variableTypes are the types a variable may have, by the keyword its
// type argument uses.
var variableTypes = map[string]cty.Type{"string": cty.String, "number": cty.Number, "bool": cty.Bool}

type variable struct {
	v     Var
	ty    cty.Type
	value cty.Value // cty.NilVal until set
	block *hcl.Block
}

// declareVariable decodes a variable block's header and default.
func (d *decoder) declareVariable(b *hcl.Block) {
	name := b.Labels[0]
	lr := b.LabelRanges[0]
	if !hclIdentifier(name) {
		d.errorf(&lr, "Invalid variable name", "%q cannot be a variable name: var.%s must be a valid identifier (letters, digits, '_' and '-', starting with a letter).", name, name)
		return
	}
	if prev, ok := d.vars[name]; ok {
		d.errorf(&lr, "Duplicate variable", "A variable named %q is already declared at %s: rename or remove one of them.", name, at(prev.block.DefRange))
		return
	}
	content, diags := b.Body.Content(variableSchema)
	d.diags = append(d.diags, diags...)
	v := &variable{v: Var{Name: name, Type: "string"}, ty: cty.String, block: b}
	if a := content.Attributes["type"]; a != nil {
		kw := hcl.ExprAsKeyword(a.Expr)
		ty, ok := variableTypes[kw]
		if !ok {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid variable type", "The type of a variable is string, number or bool, written without quotes: type = string.")
			return
		}
		v.ty, v.v.Type = ty, kw
	}
	if a := content.Attributes["description"]; a != nil {
		v.v.Description, _ = d.str(a)
	}
	if a := content.Attributes["default"]; a != nil {
		val, vd := a.Expr.Value(nil)
		if vd.HasErrors() {
			d.diags = append(d.diags, explainConstants(vd)...)
			return
		}
		if content.Attributes["type"] == nil && val.Type().IsPrimitiveType() && !val.IsNull() {
			v.ty = val.Type()
			v.v.Type = val.Type().FriendlyName()
		}
		cv, err := convert.Convert(val, v.ty)
		if err != nil || cv.IsNull() {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid default", "The default of variable %q is %s, which is not a %s: make the default a %s, or change the variable's type. Variables take a string, a number or a bool.", name, val.Type().FriendlyName(), v.v.Type, v.v.Type)
			return
		}
		v.value, v.v.Set = cv, "default"
	}
	d.vars[name] = v
}

// hclIdentifier reports whether s can follow var. in a traversal.
func hclIdentifier(s string) bool {
	return hclsyntax.ValidIdentifier(s)
}

// setVariables applies the values file and the options' values, then
// builds the evaluation context spec arguments are read in.
func (d *decoder) setVariables() {
	if src, err := fs.ReadFile(d.fsys, ValuesFile); err == nil {
		vals, diags := parseValues(d.parser, src, d.displayName(ValuesFile))
		d.diags = append(d.diags, diags...)
		for _, val := range vals {
			d.setVar(val, ValuesFile)
		}
	}
	for _, val := range d.opts.vars {
		d.setVar(val, val.From)
	}
	obj := map[string]cty.Value{}
	for name, v := range d.vars {
		if v.value == cty.NilVal {
			r := v.block.DefRange
			d.errorf(&r, "Variable not set", "Variable %q has no default and no value: set it with -var %s=VALUE, the environment variable %s%s, or a line %s = ... in %s, or give it a default.", name, name, EnvPrefix, name, name, ValuesFile)
			obj[name] = cty.UnknownVal(v.ty)
			continue
		}
		obj[name] = v.value
	}
	d.ctx = &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(obj)}}
}

func (d *decoder) setVar(val VarValue, from string) {
	v, ok := d.vars[val.Name]
	if !ok {
		if val.Optional {
			return
		}
		detail := fmt.Sprintf("%s sets variable %q, which no variable block declares.", from, val.Name)
		if s := suggest(val.Name, keys(d.vars)); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		detail += fmt.Sprintf(" Declare it with `variable %q {}` in a spec file, or drop the value.", val.Name)
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undeclared variable", Detail: detail, Subject: val.Range})
		return
	}
	cv, err := convert.Convert(cty.StringVal(val.Value), v.ty)
	if err != nil {
		r := v.block.DefRange
		if val.Range != nil {
			r = *val.Range
		}
		d.errorf(&r, "Invalid value for variable", "%s sets variable %q to %q, and it is a %s: %v.", from, val.Name, val.Value, v.v.Type, err)
		return
	}
	v.value, v.v.Set = cv, from
}

// projectVars lists the declared variables with their values, by name.
func (d *decoder) projectVars() []Var {
	var out []Var
	for _, v := range d.vars {
		if v.value == cty.NilVal || !v.value.IsKnown() {
			continue
		}
		out = append(out, v.v)
		out[len(out)-1].Value, _ = primitiveString(v.value)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// eval evaluates an argument's expression with the project's variables.
// Any other reference is refused with the reason (spec arguments are
// constants), and an undeclared var.NAME names the declared ones.
func (d *decoder) eval(expr hcl.Expression) (cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	for _, t := range expr.Variables() {
		r := t.SourceRange()
		if t.RootName() != "var" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Variables not allowed", Subject: &r})
			continue
		}
		var attr hcl.TraverseAttr
		isAttr := false
		if len(t) > 1 {
			attr, isAttr = t[1].(hcl.TraverseAttr)
		}
		if !isAttr {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid variable reference", Subject: &r,
				Detail: "Write var.NAME to read a variable."})
			continue
		}
		if _, declared := d.vars[attr.Name]; !declared {
			detail := fmt.Sprintf("No variable named %q is declared in this project.", attr.Name)
			if s := suggest(attr.Name, keys(d.vars)); s != "" {
				detail += fmt.Sprintf(" Did you mean var.%s?", s)
			}
			detail += fmt.Sprintf(" Declare it with a block `variable %q {}`.", attr.Name)
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown variable", Subject: &r, Detail: detail})
		}
	}
	if diags.HasErrors() {
		return cty.NilVal, explainConstants(diags)
	}
	v, vd := expr.Value(d.ctx)
	if !vd.HasErrors() && !v.IsWhollyKnown() {
		// Only a variable without a value is unknown, and its block
		// says so already: the argument fails without a word of its own.
		r := expr.Range()
		return cty.NilVal, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: followOn, Subject: &r}}
	}
	return v, vd
}

// followOn is the summary of the error an argument reading an unset
// variable fails with; LoadFS drops these from its report.
const followOn = "(follows from an unset variable)"

// ValuesText renders the project's variables with their values in the
// form of ValuesFile, for a revision to record; "" when it declares none.
func (p *Project) ValuesText() string {
	if len(p.Vars) == 0 {
		return ""
	}
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	for _, v := range p.Vars {
		val := cty.StringVal(v.Value)
		if ty, ok := variableTypes[v.Type]; ok {
			if cv, err := convert.Convert(val, ty); err == nil {
				val = cv
			}
		}
		body.SetAttributeValue(v.Name, val)
	}
	return "# The values of the project's variables this revision was loaded with.\n" + string(f.Bytes())
}
