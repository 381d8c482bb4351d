package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// FileSuffix is the suffix of spec files.
const FileSuffix = ".fn.hcl"

// Defaults applied where a spec is silent. Documented in the README's spec
// reference; change both together.
const (
	DefaultPool        = "default"
	DefaultTimeout     = "30s"
	DefaultMemoryMiB   = 128
	DefaultCPUMHz      = 100
	DefaultMaxInstance = 10
	DefaultPartitions  = 3

	DefaultMinHealthyTime  = 5 * time.Second
	DefaultHealthyDeadline = 2 * time.Minute
)

// skipDirs are directories never searched for spec files: dependencies
// and build outputs hold no specs of the project's own.
var skipDirs = map[string]bool{"node_modules": true, "vendor": true, "__pycache__": true, "bin": true}

// Load decodes the project in dir. The project is nil when the report
// holds errors; warnings may come with a project.
func Load(dir string, opts ...LoadOption) (*Project, *Report) {
	return LoadFS(os.DirFS(dir), dir, opts...)
}

// LoadFS decodes the project held by fsys. Display is the directory name
// used in diagnostics and as the default project name.
func LoadFS(fsys fs.FS, display string, opts ...LoadOption) (*Project, *Report) {
	d := &decoder{
		vars:      map[string]*variable{},
		fsys:      fsys,
		display:   display,
		parser:    hclparse.NewParser(),
		streams:   map[string]*Stream{},
		functions: map[string]*Function{},
		pipelines: map[string]*Pipeline{},
		pools:     map[string]*Pool{},
		deploy:    DefaultDeploy(),

		ownMiddleware: map[*Trigger]bool{},
	}
	for _, o := range opts {
		o(&d.opts)
	}
	proj := d.load()
	diags := d.diags[:0:0]
	for _, dg := range d.diags {
		if dg.Summary != followOn {
			diags = append(diags, dg)
		}
	}
	rep := &Report{Files: d.parser.Files(), Diags: diags}
	rep.sort()
	if rep.HasErrors() {
		return nil, rep
	}
	return proj, rep
}

type decoder struct {
	fsys    fs.FS
	display string
	parser  *hclparse.Parser
	diags   hcl.Diagnostics
	opts    loadOptions

	// vars are the variable blocks, and ctx the context arguments are
	// evaluated in: var.NAME for each (vars.go).
	vars map[string]*variable
	ctx  *hcl.EvalContext
	// disabled are the connectors that enabled = false leaves out.
	disabled []string

	project *hcl.Block
	kafka   *Kafka
	openapi []openapiRef
	deploy  Deploy
	// projectMiddleware is the project block's middleware argument,
	// decoded in the second pass (middleware.go).
	projectMiddleware *hcl.Attribute
	// ownMiddleware are the http triggers that set their own middleware
	// (the others get the project's).
	ownMiddleware map[*Trigger]bool
	// middlewareRefs are the functions of every middleware list, where
	// written.
	middlewareRefs []middlewareRef
	streams        map[string]*Stream
	functions      map[string]*Function
	pipelines      map[string]*Pipeline
	pools          map[string]*Pool // pool blocks (scaling.go)

	// bodies to decode in the second pass, in declaration order.
	streamBodies []pending
	// secretRefs are connectors' arguments naming one of their secrets,
	// checked once the secrets are read (connector.go).
	secretRefs     []secretRef
	functionBodies []pending
	pipelineBodies []pending
	poolBodies     []pending
}

type pending struct {
	file  string // project-relative file name
	block *hcl.Block
}

// displayName is a file's name as diagnostics show it.
func (d *decoder) displayName(rel string) string {
	if d.display == "" || d.display == "." {
		return rel
	}
	return filepath.ToSlash(filepath.Join(d.display, rel))
}

func (d *decoder) errorf(rng *hcl.Range, summary, detail string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: rng,
	})
}

func (d *decoder) warnf(rng *hcl.Range, summary, detail string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: rng,
	})
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "project", LabelNames: []string{"name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "stream", LabelNames: []string{"name"}},
		{Type: "function", LabelNames: []string{"name"}},
		{Type: "pipeline", LabelNames: []string{"name"}},
		{Type: "pool", LabelNames: []string{"name"}},
		{Type: "sink", LabelNames: []string{"type", "name"}},
		{Type: "source", LabelNames: []string{"type", "name"}},
	},
}

func (d *decoder) findFiles() []string {
	var files []string
	err := fs.WalkDir(d.fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != "." && (strings.HasPrefix(e.Name(), ".") || skipDirs[e.Name()]) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, FileSuffix) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path in it is relative to the project: name the project instead
		}
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read project directory",
			Detail:   fmt.Sprintf("Reading %s failed: %v. Check that the directory exists and is readable.", d.display, err),
		})
		return nil
	}
	sort.Strings(files)
	return files
}

func (d *decoder) load() *Project {
	files := d.findFiles()
	if files == nil && !d.diags.HasErrors() {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No spec files",
			Detail:   fmt.Sprintf("No *%s files were found in %s. Create one with `butter init %s`, or point the command at the directory that holds your specs.", FileSuffix, d.display, d.display),
		})
	}
	// Pass 1: parse every file and declare every name, so that references
	// may point forward and across files. Variables come first: the
	// other blocks' headers (project, a connector's enabled) read them.
	type declared struct {
		rel   string
		block *hcl.Block
	}
	var blocks []declared
	for _, rel := range files {
		src, err := fs.ReadFile(d.fsys, rel)
		if err != nil {
			d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read spec file",
				Detail: fmt.Sprintf("Reading %s failed: %v.", d.displayName(rel), err)})
			continue
		}
		f, diags := d.parser.ParseHCL(src, d.displayName(rel))
		d.diags = append(d.diags, diags...)
		if f == nil || diags.HasErrors() {
			continue
		}
		content, diags := f.Body.Content(rootSchema)
		d.diags = append(d.diags, diags...)
		for _, b := range content.Blocks {
			if b.Type == "variable" {
				d.declareVariable(b)
				continue
			}
			blocks = append(blocks, declared{rel, b})
		}
	}
	d.setVariables()
	for _, b := range blocks {
		d.declare(b.rel, b.block)
	}

	proj := &Project{Dir: d.display}
	proj.Files = append(proj.Files, files...)
	proj.Name = d.projectName()
	proj.Kafka = d.kafka
	proj.Deploy = d.deploy
	proj.Vars = d.projectVars()
	proj.Disabled = d.disabled

	// Pass 2: decode bodies, resolving references.
	if a := d.projectMiddleware; a != nil {
		proj.Middleware, _ = d.decodeMiddleware(a)
	}
	for _, p := range d.streamBodies {
		d.decodeStream(p)
	}
	for _, p := range d.functionBodies {
		d.decodeFunction(p)
	}
	for _, p := range d.pipelineBodies {
		d.decodePipeline(p)
	}
	for _, p := range d.poolBodies {
		d.decodePool(p)
	}
	d.checkSecretRefs()
	for _, p := range d.streamBodies {
		proj.Streams = append(proj.Streams, d.streams[p.block.Labels[0]])
	}
	for _, p := range d.functionBodies {
		proj.Functions = append(proj.Functions, d.functions[functionName(p.block)])
	}
	for _, p := range d.pipelineBodies {
		proj.Pipelines = append(proj.Pipelines, d.pipelines[p.block.Labels[0]])
	}
	sort.Slice(proj.Streams, func(i, j int) bool { return proj.Streams[i].Name < proj.Streams[j].Name })
	sort.Slice(proj.Functions, func(i, j int) bool { return proj.Functions[i].Name < proj.Functions[j].Name })
	sort.Slice(proj.Pipelines, func(i, j int) bool { return proj.Pipelines[i].Name < proj.Pipelines[j].Name })
	d.resolvePools(proj)

	d.validate(proj)
	return proj
}

func (d *decoder) projectName() string {
	if d.project != nil {
		return d.project.Labels[0]
	}
	abs, err := filepath.Abs(d.display)
	name := filepath.Base(abs)
	if err != nil || !names.Valid(name) {
		d.errorf(nil, "Project name needed",
			"The directory name %q is not a valid project name. Add a block `project \"my-project\" {}` to one spec file; names are lower-case letters, digits, '-' and '_', starting with a letter.", name)
	}
	return name
}

func (d *decoder) declare(rel string, b *hcl.Block) {
	name := functionName(b)
	lr := b.LabelRanges[len(b.LabelRanges)-1]
	if (b.Type == "sink" || b.Type == "source") && (!d.connectorType(b) || !d.connectorEnabled(b)) {
		return
	}
	if !names.Valid(name) {
		d.errorf(&lr, "Invalid "+b.Type+" name",
			"%q cannot be used as a %s name: names become Kafka topics and Nomad service names, so they use lower-case letters, digits, '-' and '_', start with a letter and are at most 63 characters long.", name, b.Type)
		return
	}
	var prev *hcl.Range
	switch b.Type {
	case "project":
		if d.project != nil {
			prev = &d.project.DefRange
			d.errorf(&lr, "Duplicate project block", "The project is already named %q at %s. A project has one project block; remove this one.", d.project.Labels[0], at(*prev))
			return
		}
		d.project = b
		d.decodeProject(rel, b)
		return
	case "stream":
		if s, ok := d.streams[name]; ok {
			prev = &s.DeclRange
		} else {
			d.streams[name] = &Stream{Name: name, DeclRange: b.DefRange}
			d.streamBodies = append(d.streamBodies, pending{rel, b})
		}
	case "function", "sink", "source":
		if f, ok := d.functions[name]; ok {
			prev = &f.DeclRange
		} else {
			f := &Function{Name: name, DeclRange: b.DefRange}
			if b.Type == "sink" || b.Type == "source" {
				f.Connector = b.Type + "." + b.Labels[0]
			}
			d.functions[name] = f
			d.functionBodies = append(d.functionBodies, pending{rel, b})
		}
	case "pipeline":
		if p, ok := d.pipelines[name]; ok {
			prev = &p.DeclRange
		} else {
			d.pipelines[name] = &Pipeline{Name: name, DeclRange: b.DefRange}
			d.pipelineBodies = append(d.pipelineBodies, pending{rel, b})
		}
	case "pool":
		if p, ok := d.pools[name]; ok {
			prev = &p.DeclRange
		} else {
			d.pools[name] = &Pool{Name: name, DeclRange: b.DefRange}
			d.poolBodies = append(d.poolBodies, pending{rel, b})
		}
	}
	if prev != nil {
		d.errorf(&lr, "Duplicate "+b.Type+" name",
			"A %s named %q is already declared at %s. Names are unique within a project, across all its files: rename one of them.", b.Type, name, at(*prev))
		return
	}
	if b.Type == "function" || b.Type == "sink" || b.Type == "source" {
		if _, ok := d.pipelines[name]; ok {
			d.errorf(&lr, "Name used twice", "%q names both a function and a pipeline. Routes and `butter invoke` address both by name: rename one of them.", name)
		}
	}
	if b.Type == "pipeline" {
		if _, ok := d.functions[name]; ok {
			d.errorf(&lr, "Name used twice", "%q names both a function and a pipeline. Routes and `butter invoke` address both by name: rename one of them.", name)
		}
	}
}

var projectSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "openapi"}, {Name: "middleware"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "kafka"}, {Type: "deploy"}},
}

var deploySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "min_healthy_time"}, {Name: "healthy_deadline"}, {Name: "auto_rollback"}},
}

var kafkaSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "brokers", Required: true}, {Name: "tls"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "sasl"}},
}

var saslSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "mechanism", Required: true}, {Name: "username", Required: true}, {Name: "password_env"}, {Name: "password_encrypted"}},
}

// saslMechanisms are the SASL mechanisms franz-go offers that Butter wires.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

func (d *decoder) decodeProject(file string, b *hcl.Block) {
	content, diags := b.Body.Content(projectSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["openapi"]; a != nil {
		d.decodeOpenAPIList(file, a)
	}
	// Its references resolve once every function is declared (load).
	d.projectMiddleware = content.Attributes["middleware"]
	first := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		if prev := first[blk.Type]; prev != nil {
			r := blk.DefRange
			d.errorf(&r, "Duplicate "+blk.Type+" block", "A project has one %s block; merge this one into the first at %s.", blk.Type, at(prev.DefRange))
			continue
		}
		first[blk.Type] = blk
		switch blk.Type {
		case "kafka":
			d.kafka = d.decodeKafka(blk)
		case "deploy":
			d.deploy = d.decodeDeploy(blk)
		}
	}
}

// decodeDeploy decodes the deploy block. Every argument is optional; the
// defaults are DefaultDeploy's.
func (d *decoder) decodeDeploy(b *hcl.Block) Deploy {
	dep := DefaultDeploy()
	dep.DeclRange = b.DefRange
	content, diags := b.Body.Content(deploySchema)
	d.diags = append(d.diags, diags...)
	positive := func(a *hcl.Attribute, example string) (time.Duration, bool) {
		v, ok := d.duration(a)
		if !ok {
			return 0, false
		}
		if v <= 0 {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid "+a.Name, "%s must be longer than zero, like %q; leave it out for the default.", a.Name, example)
			return 0, false
		}
		return v, true
	}
	minOK, deadlineOK := true, true
	minAttr, deadlineAttr := content.Attributes["min_healthy_time"], content.Attributes["healthy_deadline"]
	if minAttr != nil {
		dep.MinHealthyTime, minOK = positive(minAttr, DefaultMinHealthyTime.String())
	}
	if deadlineAttr != nil {
		dep.HealthyDeadline, deadlineOK = positive(deadlineAttr, "2m")
	}
	if minOK && deadlineOK && dep.MinHealthyTime >= dep.HealthyDeadline {
		// Point at what the author wrote: the deadline if given, else
		// the minimum.
		a := deadlineAttr
		if a == nil {
			a = minAttr
		}
		r := a.Expr.Range()
		d.errorf(&r, "Deploy times inverted",
			"healthy_deadline (%s%s) must be longer than min_healthy_time (%s%s): an allocation counts as healthy only after its checks pass for min_healthy_time, and it must get there before healthy_deadline. Raise healthy_deadline or lower min_healthy_time.",
			dep.HealthyDeadline, defaultNote(deadlineAttr), dep.MinHealthyTime, defaultNote(minAttr))
	}
	if a := content.Attributes["auto_rollback"]; a != nil {
		if v, ok := d.boolean(a); ok {
			dep.AutoRollback = v
		}
	}
	return dep
}

// defaultNote marks a value that comes from a default rather than from
// the spec, for diagnostics that compare two arguments.
func defaultNote(a *hcl.Attribute) string {
	if a == nil {
		return ", the default"
	}
	return ""
}

func (d *decoder) decodeKafka(b *hcl.Block) *Kafka {
	k := &Kafka{}
	content, diags := b.Body.Content(kafkaSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["brokers"]; a != nil {
		if list, ok := d.strList(a); ok {
			if len(list) == 0 {
				r := a.Expr.Range()
				d.errorf(&r, "No brokers", "brokers lists the seed brokers as host:port, like [\"kafka-1:9092\"].")
			}
			for _, br := range list {
				if host, port, err := net.SplitHostPort(br); err != nil || host == "" || port == "" {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid broker address", "%q is not host:port, like \"kafka-1:9092\".", br)
				}
			}
			k.Brokers = list
		}
	}
	if a := content.Attributes["tls"]; a != nil {
		k.TLS, _ = d.boolean(a)
	}
	for i, sb := range content.Blocks {
		if i > 0 {
			r := sb.DefRange
			d.errorf(&r, "Duplicate sasl block", "The kafka block takes one sasl block.")
			continue
		}
		sc, diags := sb.Body.Content(saslSchema)
		d.diags = append(d.diags, diags...)
		if a := sc.Attributes["mechanism"]; a != nil {
			k.SASLMechanism = d.oneOf(a, saslMechanisms, "")
		}
		if a := sc.Attributes["username"]; a != nil {
			k.SASLUsername, _ = d.str(a)
		}
		if a := sc.Attributes["password_env"]; a != nil {
			if v, ok := d.str(a); ok {
				if !envNameRE.MatchString(v) {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid environment variable name", "password_env names the environment variable of the pool that holds the password (the value never goes in a spec); %q is not a variable name.", v)
				}
				k.SASLPasswordEnv = v
			}
		}
		if a := sc.Attributes["password_encrypted"]; a != nil {
			if v, ok := d.str(a); ok {
				if !strings.HasPrefix(v, "vault:v") {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid encrypted password", "password_encrypted takes a Vault transit ciphertext (vault:v1:...): run `butter secrets encrypt %s` and paste its output. Never put the password itself in a spec.", d.projectName())
				}
				k.SASLPasswordEncrypted = v
			}
		}
		if (sc.Attributes["password_env"] == nil) == (sc.Attributes["password_encrypted"] == nil) {
			r := sb.DefRange
			d.errorf(&r, "SASL password", "The sasl block takes one of password_env (an environment variable of the pool) or password_encrypted (a Vault transit ciphertext from `butter secrets encrypt`).")
		}
	}
	return k
}

// ---- attribute helpers ----

// value evaluates a constant expression. References and function calls
// are not allowed in plain attributes.
func (d *decoder) value(attr *hcl.Attribute, ty cty.Type, what string) (cty.Value, bool) {
	v, diags := d.eval(attr.Expr)
	if diags.HasErrors() {
		d.diags = append(d.diags, explainConstants(diags)...)
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil || cv.IsNull() || !cv.IsWhollyKnown() {
		r := attr.Expr.Range()
		d.errorf(&r, "Invalid value for "+attr.Name, "The argument %q takes %s.", attr.Name, what)
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) str(attr *hcl.Attribute) (string, bool) {
	v, ok := d.value(attr, cty.String, "a string")
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (d *decoder) integer(attr *hcl.Attribute, lo, hi int) (int, bool) {
	v, ok := d.value(attr, cty.Number, "a whole number")
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	r := attr.Expr.Range()
	if !bf.IsInt() || acc != 0 {
		d.errorf(&r, "Invalid value for "+attr.Name, "The argument %q takes a whole number; %s is not one.", attr.Name, bf.Text('g', 10))
		return 0, false
	}
	if n < int64(lo) || n > int64(hi) {
		d.errorf(&r, "Value out of range", "The argument %q must be between %d and %d; it is %d.", attr.Name, lo, hi, n)
		return 0, false
	}
	return int(n), true
}

func (d *decoder) boolean(attr *hcl.Attribute) (bool, bool) {
	v, ok := d.value(attr, cty.Bool, "true or false")
	if !ok {
		return false, false
	}
	return v.True(), true
}

func (d *decoder) strList(attr *hcl.Attribute) ([]string, bool) {
	return d.strListOf(attr, "a list of strings, like [\"./run.sh\", \"--fast\"]")
}

// strListOf is strList with the argument's own description of what it
// takes, for the diagnostic.
func (d *decoder) strListOf(attr *hcl.Attribute, what string) ([]string, bool) {
	v, ok := d.value(attr, cty.List(cty.String), what)
	if !ok {
		return nil, false
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out, true
}

func (d *decoder) strMap(attr *hcl.Attribute) (map[string]string, bool) {
	v, ok := d.value(attr, cty.Map(cty.String), "a map of strings, like { LOG_LEVEL = \"debug\" }")
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		out[k] = e.AsString()
	}
	return out, true
}

// scalarString accepts a string or a number and returns its text, for
// arguments such as memory = 64 or memory = "64MiB".
func (d *decoder) scalarString(attr *hcl.Attribute, what string) (string, bool) {
	v, diags := d.eval(attr.Expr)
	if diags.HasErrors() {
		d.diags = append(d.diags, explainConstants(diags)...)
		return "", false
	}
	if v.Type() == cty.Number && v.IsKnown() && !v.IsNull() {
		// 'g' keeps the text short: 'f' would spell out 1e999999999 in
		// full, digit by digit.
		bf := v.AsBigFloat()
		if n, acc := bf.Int64(); bf.IsInt() && acc == 0 {
			return formatInt(n), true
		}
		return bf.Text('g', 20), true
	}
	if v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
		return v.AsString(), true
	}
	r := attr.Expr.Range()
	d.errorf(&r, "Invalid value for "+attr.Name, "The argument %q takes %s.", attr.Name, what)
	return "", false
}

func (d *decoder) duration(attr *hcl.Attribute) (time.Duration, bool) {
	s, ok := d.str(attr)
	if !ok {
		return 0, false
	}
	v, err := ParseDuration(s)
	if err != nil {
		r := attr.Expr.Range()
		d.errorf(&r, "Invalid duration", "The argument %q takes a duration such as \"500ms\", \"30s\", \"5m\", \"12h\" or \"7d\": %v.", attr.Name, err)
		return 0, false
	}
	return v, true
}

// ref resolves a reference such as stream.readings to the block's name.
// kinds lists the block types the argument accepts.
func (d *decoder) ref(expr hcl.Expression, arg string, kinds ...string) (kind, name string, ok bool) {
	r := expr.Range()
	example := kinds[0] + ".name"
	trav, diags := hcl.AbsTraversalForExpr(expr)
	if diags.HasErrors() || len(trav) != 2 {
		d.errorf(&r, "Invalid reference", "The argument %q takes a reference to a %s, like %s, written without quotes.", arg, strings.Join(kinds, " or "), example)
		return "", "", false
	}
	root := trav.RootName()
	step, isAttr := trav[1].(hcl.TraverseAttr)
	if !isAttr {
		d.errorf(&r, "Invalid reference", "The argument %q takes a reference to a %s, like %s.", arg, strings.Join(kinds, " or "), example)
		return "", "", false
	}
	accepted := false
	for _, k := range kinds {
		accepted = accepted || k == root
	}
	if !accepted {
		if root == "stream" || root == "function" || root == "pipeline" {
			d.errorf(&r, "Wrong kind of reference", "The argument %q takes a %s, but %s.%s refers to a %s.", arg, strings.Join(kinds, " or "), root, step.Name, root)
		} else {
			d.errorf(&r, "Invalid reference", "%q is not a kind of block. The argument %q takes a reference to a %s, like %s.", root, arg, strings.Join(kinds, " or "), example)
		}
		return "", "", false
	}
	var names []string
	switch root {
	case "stream":
		if _, ok := d.streams[step.Name]; ok {
			return root, step.Name, true
		}
		names = keys(d.streams)
	case "function":
		if _, ok := d.functions[step.Name]; ok {
			return root, step.Name, true
		}
		names = keys(d.functions)
	case "pipeline":
		if _, ok := d.pipelines[step.Name]; ok {
			return root, step.Name, true
		}
		names = keys(d.pipelines)
	}
	detail := fmt.Sprintf("No %s named %q is declared in this project.", root, step.Name)
	if s := suggest(step.Name, names); s != "" {
		detail += fmt.Sprintf(" Did you mean %s.%s?", root, s)
	} else if len(names) > 0 {
		detail += fmt.Sprintf(" Declared: %s.", strings.Join(names, ", "))
	}
	detail += fmt.Sprintf(" Declare it with a block `%s %q {}`, or fix the reference.", root, step.Name)
	d.errorf(&r, "Unknown "+root, "%s", detail)
	return "", "", false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- streams ----

var streamSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "partitions"}, {Name: "retention"}, {Name: "compact"}, {Name: "schema"},
	},
}

func (d *decoder) decodeStream(p pending) {
	s := d.streams[p.block.Labels[0]]
	s.Partitions = DefaultPartitions
	content, diags := p.block.Body.Content(streamSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["partitions"]; a != nil {
		if n, ok := d.integer(a, 1, 10000); ok {
			s.Partitions = n
		}
	}
	if a := content.Attributes["retention"]; a != nil {
		if v, ok := d.duration(a); ok {
			s.Retention = v
		}
	}
	if a := content.Attributes["compact"]; a != nil {
		s.Compact, _ = d.boolean(a)
	}
	if a := content.Attributes["schema"]; a != nil {
		s.Schema, _ = d.schemaFile(p.file, a)
	}
}

// localPath resolves a path written in a spec file, relative to that
// file's directory, to a project-relative path. It rejects absolute paths
// and paths that leave the project, which bundles could not carry.
func (d *decoder) localPath(file string, attr *hcl.Attribute, s string) (string, bool) {
	return d.resolvePath(file, attr.Name, attr.Expr.Range(), s, "Missing "+strings.ReplaceAll(attr.Name, "_", " "))
}

// resolvePath is localPath for the argument named arg, reporting at rng;
// missing is the summary when the path does not exist.
func (d *decoder) resolvePath(file, arg string, rng hcl.Range, s, missing string) (string, bool) {
	r := rng
	if s == "" || path.IsAbs(s) || filepath.IsAbs(s) {
		d.errorf(&r, "Invalid path", "The argument %q takes a path relative to the spec file, like \"functions/ingest\"; %q is not one.", arg, s)
		return "", false
	}
	p := path.Clean(path.Join(path.Dir(file), filepath.ToSlash(s)))
	if p == ".." || strings.HasPrefix(p, "../") {
		d.errorf(&r, "Path outside the project", "%q leaves the project directory. Everything a function needs is bundled from inside the project: move it in, or move the spec up.", s)
		return "", false
	}
	if _, err := fs.Stat(d.fsys, p); err != nil {
		d.errorf(&r, missing,
			"%s does not exist. Paths are relative to the directory of the spec file (%s); create it, or fix the path.", d.displayName(p), d.displayName(path.Dir(file)))
		return "", false
	}
	return p, true
}

func (d *decoder) schemaFile(file string, attr *hcl.Attribute) (string, bool) {
	s, ok := d.str(attr)
	if !ok {
		return "", false
	}
	p, ok := d.localPath(file, attr, s)
	if !ok {
		return "", false
	}
	src, err := fs.ReadFile(d.fsys, p)
	r := attr.Expr.Range()
	if err != nil {
		d.errorf(&r, "Cannot read schema", "Reading %s failed: %v. A schema is a JSON Schema file.", d.displayName(p), err)
		return "", false
	}
	var doc any
	if err := json.Unmarshal(src, &doc); err != nil {
		d.errorf(&r, "Schema is not JSON", "%s is not valid JSON (%v). A schema is a JSON Schema document; fix its syntax.", d.displayName(p), err)
		return "", false
	}
	if _, isObj := doc.(map[string]any); !isObj {
		if _, isBool := doc.(bool); !isBool {
			d.errorf(&r, "Schema is not a JSON Schema", "%s holds JSON, but a JSON Schema is an object (or true/false).", d.displayName(p))
			return "", false
		}
	}
	if err := compileSchema(d.fsys, p, src); err != nil {
		d.errorf(&r, "Schema does not compile", "%s is not a valid JSON Schema: %v. Fix it to follow JSON Schema draft 2020-12, or name its draft in $schema.", d.displayName(p), err)
		return "", false
	}
	return p, true
}

// schemaRoot is the URL the project directory stands at when a schema is
// compiled: its $refs to other files resolve within the project (fsys).
const schemaRoot = "file:///butter-project/"

// compileSchema compiles the JSON Schema src, the file p of fsys, as the
// pool does when it starts (plugins/pool, schemas.go), reading the files
// its $refs name from fsys.
func compileSchema(fsys fs.FS, p string, src []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return err
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(fsLoader{fsys})
	url := schemaRoot + p
	if err := c.AddResource(url, doc); err != nil {
		return err
	}
	_, err = c.Compile(url)
	if err != nil {
		return errors.New(strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// fsLoader loads the schemas a schema's $refs name from the project.
type fsLoader struct{ fsys fs.FS }

func (l fsLoader) Load(url string) (any, error) {
	name, ok := strings.CutPrefix(url, schemaRoot)
	if !ok {
		return nil, fmt.Errorf("%s is outside the project: a schema may refer only to files of the project", url)
	}
	b, err := fs.ReadFile(l.fsys, name)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// explainConstants adds how to fix hcl's "Variables not allowed" and
// "Function calls not allowed": spec files hold constants.
func explainConstants(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		switch d.Summary {
		case "Variables not allowed":
			d.Detail = "Spec arguments are constants or read the project's variables (var.NAME, declared by variable blocks): write the value itself, like timeout = \"5s\". References such as stream.readings work only in output, dead_letter, emits, calls, a stream trigger's stream, and a pipeline's steps."
		case "Function calls not allowed":
			d.Detail = "Spec arguments are constants: write the value itself, like timeout = \"5s\"; functions such as file() are not available."
		}
	}
	return diags
}
