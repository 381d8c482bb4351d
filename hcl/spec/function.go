package spec

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"

	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/wasmmod"
)

var functionSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "runtime"}, {Name: "source"}, {Name: "handler"}, {Name: "command"},
		{Name: "pool"}, {Name: "output"}, {Name: "dead_letter"}, {Name: "timeout"},
		{Name: "memory"}, {Name: "cpu"}, {Name: "env"}, {Name: "options"},
		{Name: "input_schema"}, {Name: "output_schema"}, {Name: "emits"},
		{Name: "sandbox"}, {Name: "calls"}, {Name: "mode"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "trigger", LabelNames: []string{"type"}},
		{Type: "instances"},
		{Type: "retry"},
		{Type: "state"},
		{Type: "executions"},
		{Type: "secret", LabelNames: []string{"name"}},
	},
}

func (d *decoder) decodeFunction(p pending) {
	f := d.functions[functionName(p.block)]
	f.Pool = DefaultPool
	f.Memory = DefaultMemoryMiB
	f.CPU = DefaultCPUMHz
	f.Timeout, _ = ParseDuration(DefaultTimeout)
	f.Instances = Instances{Min: 0, Max: DefaultMaxInstance, Concurrency: 1}

	schema := functionSchema
	if f.Connector != "" {
		schema = connectorSchemas[f.Connector] // connector.go
	}
	content, diags := p.block.Body.Content(schema)
	d.diags = append(d.diags, diags...)
	attrs := content.Attributes

	if f.Connector != "" {
		d.decodeConnector(f, p.block, attrs)
	} else if a := attrs["runtime"]; a == nil {
		r := p.block.DefRange
		d.errorf(&r, "Missing runtime", "Function %q needs a runtime: add runtime = \"node\" (or one of %s).", f.Name, strings.Join(Runtimes, ", "))
	} else if rt, ok := d.str(a); ok {
		known := false
		for _, k := range Runtimes {
			known = known || k == rt
		}
		if !known {
			r := a.Expr.Range()
			detail := fmt.Sprintf("%q is not a Butter runtime. Use one of %s.", rt, strings.Join(Runtimes, ", "))
			if s := suggest(rt, Runtimes); s != "" {
				detail = fmt.Sprintf("%q is not a Butter runtime. Did you mean %q? The runtimes are %s.", rt, s, strings.Join(Runtimes, ", "))
			}
			d.errorf(&r, "Unknown runtime", "%s", detail)
		} else {
			f.Runtime = rt
		}
	}
	if a := attrs["source"]; a != nil {
		if s, ok := d.str(a); ok {
			f.Source, _ = d.localPath(p.file, a, s)
		}
	}
	if a := attrs["handler"]; a != nil {
		f.Handler, _ = d.str(a)
	}
	if a := attrs["command"]; a != nil {
		if cmd, ok := d.strList(a); ok {
			if len(cmd) == 0 || cmd[0] == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Empty command", "The command is an argv list whose first element is the program, like [\"sed\", \"-u\"].")
			} else {
				f.Command = cmd
			}
		}
	}
	if a := attrs["pool"]; a != nil {
		if s, ok := d.str(a); ok {
			if !names.Valid(s) {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid pool name", "%q cannot name a pool: a pool becomes a Nomad task group, so use lower-case letters, digits, '-' and '_', starting with a letter.", s)
			} else {
				f.Pool = s
			}
		}
	}
	if a := attrs["output"]; a != nil {
		if _, name, ok := d.ref(a.Expr, "output", "stream"); ok {
			f.Output = d.streams[name]
		}
	}
	if a := attrs["dead_letter"]; a != nil {
		if _, name, ok := d.ref(a.Expr, "dead_letter", "stream"); ok {
			f.DeadLetter = d.streams[name]
		}
	}
	if a := attrs["emits"]; a != nil {
		f.Emits = d.decodeEmits(f, a)
	}
	if a := attrs["calls"]; a != nil {
		f.Calls = d.decodeCalls(f, a)
	}
	if a := attrs["timeout"]; a != nil {
		if v, ok := d.duration(a); ok {
			if v <= 0 {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid timeout", "A timeout must be longer than zero, like \"5s\".")
			} else {
				f.Timeout = v
			}
		}
	}
	if a := attrs["memory"]; a != nil {
		if s, ok := d.scalarString(a, "a size in MiB, like 128, or a string with a unit, like \"512MiB\" or \"1GiB\""); ok {
			n, err := ParseSizeMiB(s)
			if err != nil {
				r := a.Expr.Range()
				d.errorf(&r, "Invalid size", "The argument \"memory\" takes a size in MiB, like 128, or a string with a unit, like \"512MiB\" or \"1GiB\": %v.", err)
			} else {
				f.Memory = n
			}
		}
	}
	if a := attrs["cpu"]; a != nil {
		if n, ok := d.integer(a, 1, 1000000); ok {
			f.CPU = n
		}
	}
	if a := attrs["env"]; a != nil {
		if m, ok := d.strMap(a); ok {
			for k := range m {
				if !envNameRE.MatchString(k) {
					r := a.Expr.Range()
					d.errorf(&r, "Invalid environment variable name", "%q cannot be an environment variable name: use letters, digits and '_', not starting with a digit.", k)
				}
			}
			f.Env = m
		}
	}
	if a := attrs["options"]; a != nil {
		if m, ok := d.strMap(a); ok {
			f.Options = m
		}
	}
	if a := attrs["mode"]; a != nil {
		mode := d.oneOf(a, []string{"fork", "lines"}, "")
		if f.Runtime != "exec" && mode != "" {
			r := a.Range
			d.errorf(&r, "Mode of a non-exec function", "mode chooses how an exec function's command runs (\"fork\": a process per call; \"lines\": one process per instance, one event per line); function %q has runtime %q. Remove mode.", f.Name, f.Runtime)
		} else if mode == "lines" {
			f.ExecMode, f.ExecModeRange = mode, a.Range
		}
	}
	if a := attrs["sandbox"]; a != nil {
		if on, ok := d.boolean(a); ok && !on {
			f.NoSandbox, f.SandboxRange = true, a.Range
			r := a.Range
			d.warnf(&r, "Function not sandboxed", "Function %q runs unconfined (sandbox = false): its instances can read the files of every function in pool %q (their bundles), the environment of their instances in /proc (secrets included) and the pool's own files. Remove the argument unless the function truly needs to reach outside its own directories, and then give it a pool of its own.", f.Name, f.Pool)
		}
	}
	if a := attrs["input_schema"]; a != nil {
		f.InputSchema, _ = d.schemaFile(p.file, a)
	}
	if a := attrs["output_schema"]; a != nil {
		f.OutputSchema, _ = d.schemaFile(p.file, a)
	}

	seen := map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "instances", "retry", "state", "executions":
			if prev := seen[b.Type]; prev != nil {
				r := b.DefRange
				d.errorf(&r, "Duplicate "+b.Type+" block", "A function takes one %s block, and function %q has another at %s. Merge the two.", b.Type, f.Name, at(prev.DefRange))
				continue
			}
			seen[b.Type] = b
		}
		switch b.Type {
		case "trigger":
			if t := d.decodeTrigger(b); t != nil {
				if t.Type == TriggerHTTP && t.Timeout == 0 {
					t.Timeout = f.Timeout // a route's deadline defaults to the function's
				}
				f.Triggers = append(f.Triggers, t)
			}
		case "instances":
			d.decodeInstances(f, b)
		case "retry":
			f.Retry = d.decodeRetry(b)
		case "state":
			f.State = d.decodeState(b)
		case "executions":
			f.Executions = d.decodeExecutions(b)
		case "secret":
			if s := d.decodeSecret(f, b); s != nil {
				f.Secrets = append(f.Secrets, s)
			}
		}
	}
	d.checkRuntime(f, attrs, p)
}

// emitsHelp says what the emits argument takes.
const emitsHelp = "emits is a list of the streams the function may emit to besides its output, like emits = [stream.alerts, stream.audit], written without quotes."

// decodeEmits reads a function's emits list: references to declared
// streams, each once. The pool refuses an emit to any other stream.
func (d *decoder) decodeEmits(f *Function, a *hcl.Attribute) []*Stream {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		r := a.Expr.Range()
		d.errorf(&r, "Invalid emits", "%s", emitsHelp)
		return nil
	}
	var out []*Stream
	seen := map[string]hcl.Range{}
	for _, e := range exprs {
		if trav, diags := hcl.AbsTraversalForExpr(e); !diags.HasErrors() && len(trav) == 2 && trav.RootName() == "stream" {
			if step, isAttr := trav[1].(hcl.TraverseAttr); isAttr && strings.HasPrefix(step.Name, "_") {
				r := e.Range()
				d.errorf(&r, "Internal topic", "stream.%s is not a stream: topics whose names start with '_' (state changelogs, timer ticks) belong to the platform, and no function may emit to them. Emit to a stream the project declares.", step.Name)
				continue
			}
		}
		_, name, ok := d.ref(e, "emits", "stream")
		if !ok {
			continue
		}
		r := e.Range()
		if prev, dup := seen[name]; dup {
			d.warnf(&r, "Stream listed twice", "Function %q lists stream.%s in emits again (first at %s). Remove one.", f.Name, name, at(prev))
			continue
		}
		seen[name] = r
		out = append(out, d.streams[name])
	}
	return out
}

// checkRuntime checks the arguments each runtime needs.
func (d *decoder) checkRuntime(f *Function, attrs hcl.Attributes, p pending) {
	def := p.block.DefRange
	switch f.Runtime {
	case "node", "python", "go", "java", "wasm":
		if attrs["source"] == nil {
			d.errorf(&def, "Missing source", "%s function needs its code: add source = \"functions/%s\" (a file or a directory, relative to this spec file).", article(f.Runtime), f.Name)
		}
		if a := attrs["command"]; a != nil {
			r := a.NameRange
			d.errorf(&r, "Unexpected command", "Only exec and http functions take a command; %s function runs its source. Remove the command, or use runtime = \"exec\".", strings.ToLower(article(f.Runtime)))
		}
		if f.Runtime == "wasm" && f.Source != "" && !strings.HasSuffix(f.Source, ".wasm") {
			r := attrs["source"].Expr.Range()
			d.errorf(&r, "Not a WebAssembly module", "A wasm function's source is a compiled .wasm module; %s is not one.", d.displayName(f.Source))
		} else if f.Runtime == "wasm" && f.Source != "" {
			// The module is the function: its _start runs per call.
			if a := attrs["handler"]; a != nil {
				r := a.NameRange
				d.errorf(&r, "Unexpected handler", "A wasm function runs its module's _start with the input on stdin; handler applies to node, python and go functions. Remove it.")
			}
			f.Handler = path.Base(f.Source)
			// The module as a pool would load it: a binary, valid,
			// importing WASI preview 1 only, with a _start.
			if b, err := fs.ReadFile(d.fsys, f.Source); err == nil {
				if err := wasmmod.Check(context.Background(), d.displayName(f.Source), b); err != nil {
					r := attrs["source"].Expr.Range()
					d.errorf(&r, "Not a runnable WebAssembly module", "%s.", err)
				}
			}
		}
	case "exec", "http":
		if f.Command == nil && attrs["command"] == nil {
			d.errorf(&def, "Missing command", "%s function runs a program: add command = [\"program\", \"arg\"], like command = [\"tr\", \"a-z\", \"A-Z\"].", article(f.Runtime))
		}
		if a := attrs["handler"]; a != nil {
			r := a.NameRange
			d.errorf(&r, "Unexpected handler", "%s function runs its command; handler applies to node, python and go functions. Remove it.", article(f.Runtime))
		}
	}
	if f.Runtime == "java" && f.Source != "" {
		d.checkJava(f, attrs, def)
	}
	if f.Handler == "" && f.Source != "" && (f.Runtime == "python" || f.Runtime == "node") {
		// The default handler is the function "handle" of the source file,
		// or of index.js / main.py in a source directory.
		module := map[string]string{"node": "index", "python": "main"}[f.Runtime]
		if fi, err := fs.Stat(d.fsys, f.Source); err == nil && !fi.IsDir() {
			module = strings.TrimSuffix(path.Base(f.Source), path.Ext(f.Source))
		}
		f.Handler = module + ".handle"
	}
	if f.Source != "" && (f.Runtime == "python" || f.Runtime == "node") {
		// A single-file source must be in the runtime's language.
		ext := path.Ext(f.Source)
		want := map[string][]string{"node": {".js", ".mjs", ".cjs"}, "python": {".py"}}[f.Runtime]
		if ext != "" {
			ok := false
			for _, w := range want {
				ok = ok || ext == w
			}
			if !ok {
				r := attrs["source"].Expr.Range()
				d.errorf(&r, "Source does not match runtime", "%s is not a %s file (expected %s). Fix the runtime or the source.", d.displayName(f.Source), f.Runtime, strings.Join(want, " or "))
			}
		}
	}
}

var instancesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "min"}, {Name: "max"}, {Name: "concurrency"}, {Name: "spare"}},
}

func (d *decoder) decodeInstances(f *Function, b *hcl.Block) {
	content, diags := b.Body.Content(instancesSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["min"]; a != nil {
		if n, ok := d.integer(a, 0, 100000); ok {
			f.Instances.Min = n
		}
	}
	if a := content.Attributes["max"]; a != nil {
		if n, ok := d.integer(a, 1, 100000); ok {
			f.Instances.Max = n
		}
	} else if f.Instances.Min > f.Instances.Max {
		f.Instances.Max = f.Instances.Min
	}
	if a := content.Attributes["concurrency"]; a != nil {
		if n, ok := d.integer(a, 1, 10000); ok {
			f.Instances.Concurrency = n
		}
	}
	if f.Instances.Min > f.Instances.Max {
		r := b.DefRange
		if a := content.Attributes["min"]; a != nil {
			r = a.Range
		}
		d.errorf(&r, "Instance bounds inverted", "min (%d) is greater than max (%d). Lower min or raise max.", f.Instances.Min, f.Instances.Max)
	}
	if a := content.Attributes["spare"]; a != nil {
		if n, ok := d.integer(a, 0, 100000); ok {
			f.Instances.Spare = n
			if n > f.Instances.Max {
				d.errorf(&a.Range, "Too many spare instances", "spare (%d) is greater than max (%d): the pool never runs more than max instances of a function. Lower spare or raise max.", n, f.Instances.Max)
			}
		}
	}
}

var retrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "attempts", Required: true}, {Name: "backoff"}, {Name: "max_backoff"}},
}

func (d *decoder) decodeRetry(b *hcl.Block) *Retry {
	r := &Retry{Attempts: 1}
	r.Backoff, _ = ParseDuration("1s")
	content, diags := b.Body.Content(retrySchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["attempts"]; a != nil {
		if n, ok := d.integer(a, 1, 100); ok {
			r.Attempts = n
		}
	}
	if a := content.Attributes["backoff"]; a != nil {
		if v, ok := d.duration(a); ok {
			r.Backoff = v
		}
	}
	r.MaxBackoff = 32 * r.Backoff
	if a := content.Attributes["max_backoff"]; a != nil {
		if v, ok := d.duration(a); ok {
			r.MaxBackoff = v
			if v < r.Backoff {
				rng := a.Expr.Range()
				d.errorf(&rng, "Invalid max_backoff", "max_backoff (%s) is shorter than backoff (%s); backoff doubles up to max_backoff. Raise it.", v, r.Backoff)
			}
		}
	}
	return r
}

var stateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "key", Required: true}, {Name: "ttl"}},
}

func (d *decoder) decodeState(b *hcl.Block) *State {
	s := &State{}
	content, diags := b.Body.Content(stateSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["key"]; a != nil {
		if k, ok := d.str(a); ok {
			if k == "" {
				r := a.Expr.Range()
				d.errorf(&r, "Empty state key", "key names the input field that selects the state, like \"device\", or \"$key\" for the event's record key.")
			}
			s.Key = k
		}
	}
	if a := content.Attributes["ttl"]; a != nil {
		s.TTL, _ = d.duration(a)
	}
	return s
}

var secretSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "vault", Required: true}},
}

func (d *decoder) decodeSecret(f *Function, b *hcl.Block) *Secret {
	name := b.Labels[0]
	lr := b.LabelRanges[0]
	if !envNameRE.MatchString(name) {
		d.errorf(&lr, "Invalid secret name", "%q cannot be a secret name: the function sees the secret as an environment variable, so use letters, digits and '_', not starting with a digit.", name)
		return nil
	}
	for _, s := range f.Secrets {
		if s.Name == name {
			d.errorf(&lr, "Duplicate secret", "Function %q already declares secret %q at %s; remove one.", f.Name, name, at(s.DeclRange))
			return nil
		}
	}
	if _, ok := f.Env[name]; ok {
		d.errorf(&lr, "Secret shadows env", "%q is both a secret and an entry of env in function %q. Remove it from env: the secret sets it.", name, f.Name)
		return nil
	}
	s := &Secret{Name: name, DeclRange: b.DefRange}
	content, diags := b.Body.Content(secretSchema)
	d.diags = append(d.diags, diags...)
	if a := content.Attributes["vault"]; a != nil {
		v, ok := d.str(a)
		if !ok {
			return nil
		}
		p, k, found := strings.Cut(v, "#")
		if !found || p == "" || k == "" || strings.Contains(k, "#") {
			r := a.Expr.Range()
			d.errorf(&r, "Invalid Vault reference", "vault takes \"<path>#<key>\", like \"kv/data/iot/influx#token\": the secret's path in Vault and the key inside it.")
			return nil
		}
		s.Path, s.Key = p, k
	}
	return s
}

// checkJava checks a java function: its source is a .java file, a .jar,
// or a directory of them, and its handler the class that implements
// dev.butter.Handler (by default, a single .java file's class).
func (d *decoder) checkJava(f *Function, attrs hcl.Attributes, def hcl.Range) {
	src := attrs["source"].Expr.Range()
	fi, err := fs.Stat(d.fsys, f.Source)
	if err != nil {
		return // reported with the source
	}
	switch ext := path.Ext(f.Source); {
	case ext == ".java":
		if f.Handler == "" {
			f.Handler = strings.TrimSuffix(path.Base(f.Source), ".java")
		}
	case ext == ".jar":
	case !fi.IsDir():
		d.errorf(&src, "Source does not match runtime", "%s is not a .java source or a .jar (a java function's source is either, or a directory of them). Fix the runtime or the source.", d.displayName(f.Source))
		return
	default:
		// An empty directory is a tree without its sources (a gateway
		// rebuilds a revision's tree from its spec files, the sources'
		// directories empty): nothing to check here; the pool's javac
		// says so if it is truly empty.
		files, found := 0, false
		_ = fs.WalkDir(d.fsys, f.Source, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files++
				if strings.HasSuffix(p, ".java") || strings.HasSuffix(p, ".jar") {
					found = true
					return fs.SkipAll
				}
			}
			return nil
		})
		if files > 0 && !found {
			d.errorf(&src, "No Java code", "%s has no .java source and no .jar: put the function's sources (or its jar) there.", d.displayName(f.Source))
			return
		}
	}
	if f.Handler == "" {
		d.errorf(&def, "Missing handler", "A java function names the class that implements dev.butter.Handler: add handler = \"com.example.Echo\".")
		return
	}
	for _, part := range strings.Split(f.Handler, ".") {
		if !javaIdent(part) {
			r := def
			if a := attrs["handler"]; a != nil {
				r = a.Expr.Range()
			}
			d.errorf(&r, "Invalid handler", "%q is not a Java class name such as com.example.Echo: a java function's handler is the class that implements dev.butter.Handler.", f.Handler)
			return
		}
	}
}

func javaIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r == '$' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}
