package spec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// OpenAPIExtensionPrefix starts the names of the extensions that set an
// OpenAPI operation's route arguments: x-butter-auth is auth,
// x-butter-max-body is max_body, and so on for every argument of an http
// trigger but route. x-butter-ignore: true leaves an operation unrouted
// without a warning.
const OpenAPIExtensionPrefix = "x-butter-"

// openapiArgs are the http trigger arguments an OpenAPI extension may set.
var openapiArgs = []string{"auth", "mode", "jwks_url", "audience", "issuer", "max_body", "timeout", "rate", "burst", "cors_origins"}

// OpenAPIExtensions returns the names of the x-butter-* extensions an
// OpenAPI document may carry, on an operation or at its root (defaults
// for every operation), sorted.
func OpenAPIExtensions() []string {
	out := []string{OpenAPIExtensionPrefix + "ignore"}
	for _, a := range openapiArgs {
		out = append(out, extensionName(a))
	}
	sort.Strings(out)
	return out
}

func extensionName(arg string) string {
	return OpenAPIExtensionPrefix + strings.ReplaceAll(arg, "_", "-")
}

// openapiRef is one entry of the project block's openapi list.
type openapiRef struct {
	path string    // project-relative
	rng  hcl.Range // the list element, or the whole argument's value
}

// decodeOpenAPIList checks the project's openapi argument: a list of
// paths, relative to the spec file, of files inside the project. The
// documents themselves are read once every function and pipeline is
// decoded (addOpenAPIRoutes).
func (d *decoder) decodeOpenAPIList(file string, attr *hcl.Attribute) {
	list, ok := d.strListOf(attr, "a list of OpenAPI 3 documents, relative to the spec file, like [\"api/openapi.yaml\"]")
	if !ok {
		return
	}
	r := attr.Expr.Range()
	elems, diags := hcl.ExprList(attr.Expr)
	seen := map[string]bool{}
	for i, s := range list {
		er := r
		if !diags.HasErrors() && len(elems) == len(list) {
			er = elems[i].Range()
		}
		p, ok := d.resolvePath(file, attr.Name, er, s, "Missing OpenAPI document")
		if !ok {
			continue
		}
		if fi, err := fs.Stat(d.fsys, p); err == nil && fi.IsDir() {
			d.errorf(&er, "OpenAPI document is a directory", "%s is a directory. openapi lists OpenAPI 3 documents, one JSON or YAML file each, like \"api/openapi.yaml\".", d.displayName(p))
			continue
		}
		if ext := path.Ext(p); ext != ".json" && ext != ".yaml" && ext != ".yml" {
			// The gateway rebuilds a revision's tree by these suffixes
			// (cmd/butter's specFS): other names would not reach it.
			d.errorf(&er, "OpenAPI document name", "%s does not end in .json, .yaml or .yml. Name the document after its format, like \"api/openapi.yaml\".", d.displayName(p))
			continue
		}
		if seen[p] {
			d.errorf(&er, "Duplicate OpenAPI document", "%s is listed twice in openapi; remove one.", d.displayName(p))
			continue
		}
		seen[p] = true
		d.openapi = append(d.openapi, openapiRef{path: p, rng: er})
	}
}

// addOpenAPIRoutes reads the project's OpenAPI documents and appends an
// http trigger to each function or pipeline an operationId names. It runs
// before the checks that span blocks, so that those routes are checked
// against every other route, and a pipeline's route gets its default
// timeout like any other.
func (d *decoder) addOpenAPIRoutes(p *Project) {
	for _, ref := range d.openapi {
		p.OpenAPI = append(p.OpenAPI, ref.path)
		if doc, ok := d.loadOpenAPI(ref); ok {
			d.routeOperations(p, ref, doc)
		}
	}
}

// loadOpenAPI reads, parses and validates one document with kin-openapi.
func (d *decoder) loadOpenAPI(ref openapiRef) (*openapi3.T, bool) {
	name := d.displayName(ref.path)
	r := ref.rng
	src, err := fs.ReadFile(d.fsys, ref.path)
	if err != nil {
		d.errorf(&r, "Cannot read OpenAPI document", "Reading %s failed: %v.", name, err)
		return nil, false
	}
	loader := openapi3.NewLoader()
	loader.IncludeOrigin = true // operations' line numbers, for diagnostics
	// External references stay off: only the listed files travel with a
	// revision, so a $ref to another file could not be resolved by the
	// gateway.
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(src)
	if err != nil {
		var ext *openapi3.DisallowedExternalRefError
		if errors.As(err, &ext) {
			d.errorf(&r, "External reference in OpenAPI document", "%s refers to another file ($ref: %q). Only the documents listed in openapi travel with a revision, so each must stand alone: move the referenced definitions into the document (under components), or list a bundled document instead.", name, ext.Ref)
		} else {
			d.errorf(&r, "Invalid OpenAPI document", "%s does not parse as an OpenAPI document: %v. It must be a JSON or YAML object, like openapi: \"3.0.3\", info: {...}, paths: {...}.", name, err)
		}
		return nil, false
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		switch {
		case doc.Extensions["swagger"] != nil:
			d.errorf(&r, "Not an OpenAPI 3 document", "%s is a Swagger 2.0 document (it has a swagger field). Butter reads OpenAPI 3 documents: convert it to OpenAPI 3, with a converter such as swagger2openapi.", name)
		case doc.OpenAPI == "":
			d.errorf(&r, "Not an OpenAPI 3 document", "%s has no openapi field. An OpenAPI 3 document starts with openapi: \"3.0.3\" (or another 3.x version).", name)
		default:
			d.errorf(&r, "Not an OpenAPI 3 document", "%s says openapi: %q. Butter reads OpenAPI 3 documents, whose openapi field is \"3.0.x\", \"3.1.x\" or \"3.2.x\".", name, doc.OpenAPI)
		}
		return nil, false
	}
	if err := doc.Validate(context.Background()); err != nil {
		d.errorf(&r, "Invalid OpenAPI document", "%s is not a valid OpenAPI %s document: %v. Fix the document; Butter validates it with kin-openapi.", name, doc.OpenAPI, err)
		return nil, false
	}
	return doc, true
}

// routeOperations turns the operations of a valid document into triggers.
func (d *decoder) routeOperations(p *Project, ref openapiRef, doc *openapi3.T) {
	if doc.Paths == nil {
		return
	}
	var targets []string
	for _, f := range p.Functions {
		targets = append(targets, f.Name)
	}
	for _, pl := range p.Pipelines {
		targets = append(targets, pl.Name)
	}
	sort.Strings(targets)
	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, tmpl := range keys {
		ops := paths[tmpl].Operations()
		methods := make([]string, 0, len(ops))
		for m := range ops {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, m := range methods {
			op := ops[m]
			if op == nil || op.OperationID == "" {
				continue // nothing names a target
			}
			d.routeOperation(p, ref, doc, strings.ToUpper(m), tmpl, op, targets)
		}
	}
}

func (d *decoder) routeOperation(p *Project, ref openapiRef, doc *openapi3.T, method, tmpl string, op *openapi3.Operation, targets []string) {
	r := ref.rng
	where := d.displayName(ref.path)
	if op.Origin != nil && op.Origin.Key != nil && op.Origin.Key.Line > 0 {
		where = fmt.Sprintf("%s:%d", where, op.Origin.Key.Line)
	}
	what := fmt.Sprintf("Operation %q (%s %s, %s)", op.OperationID, method, tmpl, where)

	// The extensions: the document's root sets defaults, the operation
	// overrides them.
	ext := map[string]any{}
	for _, src := range []map[string]any{doc.Extensions, op.Extensions} {
		for k, v := range src {
			if strings.HasPrefix(k, OpenAPIExtensionPrefix) {
				ext[k] = v
			}
		}
	}
	known := OpenAPIExtensions()
	names := make([]string, 0, len(ext))
	for k := range ext {
		names = append(names, k)
	}
	sort.Strings(names)
	bad := false
	for _, k := range names {
		if slices.Contains(known, k) {
			continue
		}
		detail := fmt.Sprintf("%s carries the extension %s, which Butter does not know.", what, k)
		if s := suggest(k, known); s != "" {
			detail += fmt.Sprintf(" Did you mean %s?", s)
		}
		detail += fmt.Sprintf(" The x-butter-* extensions are %s.", strings.Join(known, ", "))
		d.errorf(&r, "Unknown OpenAPI extension", "%s", detail)
		bad = true
	}
	attrs := hcl.Attributes{}
	for _, arg := range append([]string{"ignore"}, openapiArgs...) {
		name := extensionName(arg)
		if v, ok := ext[name]; ok {
			attrs[arg] = &hcl.Attribute{Name: name, Expr: hcl.StaticExpr(extValue(v), r), Range: r, NameRange: r}
		}
	}

	// Diagnostics about the extensions' values come from the checks http
	// triggers use; say which operation they are about.
	checked := func(check func()) {
		start := len(d.diags)
		check()
		for _, diag := range d.diags[start:] {
			diag.Detail = fmt.Sprintf("%s: %s (In an OpenAPI document, the route's arguments are x-butter-* extensions, with '-' for '_': max_body is x-butter-max-body.)", what, diag.Detail)
		}
	}

	if a := attrs["ignore"]; a != nil {
		ignore, ok := false, false
		checked(func() { ignore, ok = d.boolean(a) })
		if !ok || ignore {
			return
		}
	}
	var owner *[]*Trigger
	var fn *Function
	if f := p.Function(op.OperationID); f != nil {
		owner, fn = &f.Triggers, f
	} else if pl := p.Pipeline(op.OperationID); pl != nil {
		owner = &pl.Triggers
	} else {
		detail := fmt.Sprintf("%s names no function or pipeline of this project, so the gateway does not route it.", what)
		if s := suggest(op.OperationID, targets); s != "" {
			detail += fmt.Sprintf(" Did you mean %q? Set operationId to the name of the function or pipeline that serves it.", s)
		} else {
			detail += " An operation is routed when its operationId is the name of a function or a pipeline."
		}
		detail += " If another service serves it, add x-butter-ignore: true to the operation."
		d.warnf(&r, "OpenAPI operation without a function", "%s", detail)
		return
	}

	t := &Trigger{Type: TriggerHTTP, Auth: "none", Mode: "direct", RouteRange: r, DeclRange: r, OpenAPI: ref.path, OperationID: op.OperationID}
	if !httpMethods[method] || method == "ANY" {
		d.errorf(&r, "Invalid route in OpenAPI document", "%s cannot be routed: the gateway routes GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS requests, not %s. Serve it elsewhere (and mark it x-butter-ignore: true), or use one of those methods.", what, method)
		bad = true
	} else if m, pth, err := ParseRoute(method + " " + tmpl); err != nil {
		d.errorf(&r, "Invalid route in OpenAPI document", "%s cannot be routed: %v. The gateway's routes are Go ServeMux patterns: a path parameter is a whole segment named like an identifier, as in /devices/{device}.", what, err)
		bad = true
	} else {
		t.Method, t.Path = m, pth
	}
	checked(func() {
		if a := attrs["auth"]; a != nil {
			t.Auth = d.oneOf(a, authModes, "none")
		}
		if a := attrs["mode"]; a != nil {
			t.Mode = d.oneOf(a, invokeModes, "direct")
		}
		d.decodeHTTPLimits(t, attrs)
	})
	if attrs["auth"] == nil && secured(doc, op) {
		d.warnf(&r, "OpenAPI security not enforced", "%s requires security in the document, but Butter does not read security schemes: the route is open to anyone. Add x-butter-auth: api_key (or jwt, with x-butter-jwks-url and x-butter-audience) to the operation or to the document's root, or x-butter-auth: none to confirm that the route is public.", what)
	}
	if bad {
		return
	}
	if fn != nil && t.Timeout == 0 {
		t.Timeout = fn.Timeout // as for a trigger block; pipelines get theirs in validate
	}
	*owner = append(*owner, t)
}

// secured reports whether an operation requires security: its own
// security requirements, or the document's when it has none, list at
// least one requirement and none of them is empty (an empty one makes
// security optional).
func secured(doc *openapi3.T, op *openapi3.Operation) bool {
	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	if len(reqs) == 0 {
		return false
	}
	for _, r := range reqs {
		if len(r) == 0 {
			return false
		}
	}
	return true
}

// extValue converts an extension's JSON or YAML value to a cty value for
// the trigger argument checks. Values no argument takes (objects, null)
// become null, which those checks report as the wrong type.
func extValue(v any) cty.Value {
	switch x := v.(type) {
	case string:
		return cty.StringVal(x)
	case bool:
		return cty.BoolVal(x)
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) { // cty refuses NaN
			return cty.NumberFloatVal(x)
		}
	case int:
		return cty.NumberIntVal(int64(x))
	case int64:
		return cty.NumberIntVal(x)
	case uint64:
		return cty.NumberUIntVal(x)
	case json.Number:
		if n, err := cty.ParseNumberVal(string(x)); err == nil {
			return n
		}
	case []any:
		if len(x) == 0 {
			return cty.EmptyTupleVal
		}
		elems := make([]cty.Value, len(x))
		for i, e := range x {
			elems[i] = extValue(e)
			if elems[i].IsNull() {
				return cty.NullVal(cty.DynamicPseudoType)
			}
		}
		return cty.TupleVal(elems)
	}
	return cty.NullVal(cty.DynamicPseudoType)
}
