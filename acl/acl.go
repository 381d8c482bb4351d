// Package acl is the control plane's policy language and its evaluation,
// shaped like Nomad's ACL system: a policy is an HCL file of rules that
// grant capabilities, a token carries policy names (or is a management
// token that may do everything), and a request is allowed when one of its
// token's policies grants the capability it needs.
//
//	project "iot" { capabilities = ["deploy", "read", "keys"] }
//	project "*"   { capabilities = ["read"] }      # glob on the name
//	operator      { capabilities = ["snapshot", "raft"] }
//
// A project block's label is a project name or a glob ('*' matches any run
// of characters, '?' one; path.Match's syntax). Capabilities are additive:
// a project gets the union of the capabilities of every block that
// matches it, across all of a token's policies. Nothing denies.
//
// Neighbours: package scheduler stores policies and tokens in its Raft
// state (package scheduler/fsm) and checks every route against them;
// cmd/butter's `acl policy apply` parses a file with Parse before sending
// it, so an error names the file's line and column.
package acl

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The capabilities of a project block.
const (
	// CapDeploy creates projects and revisions, rolls back, uploads blobs.
	CapDeploy = "deploy"
	// CapRead reads projects, revisions, API key hashes and blobs.
	CapRead = "read"
	// CapKeys creates and revokes the project's API keys.
	CapKeys = "keys"
)

// The capabilities of the operator block.
const (
	// CapSnapshot saves and restores snapshots of the whole state.
	CapSnapshot = "snapshot"
	// CapRaft lists and removes Raft peers.
	CapRaft = "raft"
)

// ProjectCapabilities and OperatorCapabilities are the valid capabilities
// of each block, in the order errors list them.
var (
	ProjectCapabilities  = []string{CapDeploy, CapRead, CapKeys}
	OperatorCapabilities = []string{CapSnapshot, CapRaft}
)

// Blocks are the valid block types of a policy.
var Blocks = []string{`project "<name or glob>"`, "operator"}

// ProjectRule grants capabilities on the projects Name matches.
type ProjectRule struct {
	// Name is a project name or a path.Match glob.
	Name         string
	Capabilities []string
}

// Policy is a parsed policy file.
type Policy struct {
	Projects []ProjectRule
	// Operator is the operator block's capabilities.
	Operator []string
}

// Parse parses a policy's HCL text; filename is what errors name
// (file:line:col). An unknown block, attribute or capability, a
// malformed glob, or anything not HCL is an error that lists what is
// valid.
func Parse(filename string, src []byte) (*Policy, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagErr(diags)
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, fmt.Errorf("%s: not an HCL native-syntax file", filename)
	}
	p := &Policy{}
	for _, a := range sortedAttrs(body) {
		return nil, fmt.Errorf("%s: unexpected attribute %q at the top level: a policy has only blocks: %s", pos(a.NameRange), a.Name, strings.Join(Blocks, ", "))
	}
	seenOperator := false
	for _, b := range body.Blocks {
		switch b.Type {
		case "project":
			if len(b.Labels) != 1 || b.Labels[0] == "" {
				return nil, fmt.Errorf("%s: a project block takes one label, the project's name or a glob: project \"iot\" { ... } or project \"*\" { ... }", pos(b.TypeRange))
			}
			name := b.Labels[0]
			if _, err := path.Match(name, "x"); err != nil || strings.Contains(name, "/") {
				return nil, fmt.Errorf("%s: project %q: not a valid name or glob: use letters, digits, '-', '_' and the wildcards '*' and '?'", pos(b.LabelRanges[0]), name)
			}
			caps, err := capabilities(b, "project "+quote(name), ProjectCapabilities)
			if err != nil {
				return nil, err
			}
			p.Projects = append(p.Projects, ProjectRule{Name: name, Capabilities: caps})
		case "operator":
			if len(b.Labels) != 0 {
				return nil, fmt.Errorf("%s: the operator block takes no label: operator { capabilities = [...] }", pos(b.LabelRanges[0]))
			}
			if seenOperator {
				return nil, fmt.Errorf("%s: a second operator block: put all operator capabilities in one", pos(b.TypeRange))
			}
			seenOperator = true
			caps, err := capabilities(b, "operator", OperatorCapabilities)
			if err != nil {
				return nil, err
			}
			p.Operator = caps
		default:
			return nil, fmt.Errorf("%s: unknown block %q: a policy's blocks are %s", pos(b.TypeRange), b.Type, strings.Join(Blocks, ", "))
		}
	}
	return p, nil
}

// capabilities reads a block's one attribute, capabilities, a list of
// strings from valid.
func capabilities(b *hclsyntax.Block, what string, valid []string) ([]string, error) {
	for _, inner := range b.Body.Blocks {
		return nil, fmt.Errorf("%s: %s: unexpected block %q: the block has only capabilities = [%s]", pos(inner.TypeRange), what, inner.Type, quoteAll(valid))
	}
	var caps []string
	found := false
	for _, a := range sortedAttrs(b.Body) {
		if a.Name != "capabilities" {
			return nil, fmt.Errorf("%s: %s: unknown attribute %q: the block has only capabilities = [%s]", pos(a.NameRange), what, a.Name, quoteAll(valid))
		}
		found = true
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return nil, diagErr(diags)
		}
		if !v.Type().IsTupleType() && !v.Type().IsListType() {
			return nil, fmt.Errorf("%s: %s: capabilities must be a list of strings, such as [%s]", pos(a.Expr.Range()), what, quoteAll(valid))
		}
		tuple, _ := a.Expr.(*hclsyntax.TupleConsExpr)
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			at := a.Expr.Range()
			if tuple != nil && i < len(tuple.Exprs) {
				at = tuple.Exprs[i].Range() // the element itself
			}
			if e.IsNull() || !e.IsKnown() || e.Type() != cty.String {
				return nil, fmt.Errorf("%s: %s: capabilities must be a list of strings, such as [%s]", pos(at), what, quoteAll(valid))
			}
			c := e.AsString()
			if !slices.Contains(valid, c) {
				return nil, fmt.Errorf("%s: %s: unknown capability %q: valid ones are %s", pos(at), what, c, quoteAll(valid))
			}
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: %s: missing capabilities = [...]: valid ones are %s", pos(b.TypeRange), what, quoteAll(valid))
	}
	return caps, nil
}

func sortedAttrs(b *hclsyntax.Body) []*hclsyntax.Attribute {
	out := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
	for _, a := range b.Attributes {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NameRange.Start.Byte < out[j].NameRange.Start.Byte })
	return out
}

func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}

// diagErr turns HCL diagnostics into one error of file:line:col: lines.
func diagErr(diags hcl.Diagnostics) error {
	var lines []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = pos(*d.Subject) + ": " + msg
		}
		lines = append(lines, msg)
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}

// ACL is what a token may do: the union of its policies, or everything
// for a management token.
type ACL struct {
	management bool
	projects   []ProjectRule
	operator   []string
}

// Management is the ACL of a management token.
func Management() *ACL { return &ACL{management: true} }

// New merges policies into one ACL.
func New(policies ...*Policy) *ACL {
	a := &ACL{}
	for _, p := range policies {
		if p == nil {
			continue
		}
		a.projects = append(a.projects, p.Projects...)
		for _, c := range p.Operator {
			if !slices.Contains(a.operator, c) {
				a.operator = append(a.operator, c)
			}
		}
	}
	return a
}

// IsManagement says whether the ACL is a management token's.
func (a *ACL) IsManagement() bool { return a.management }

// AllowProject says whether the ACL grants capability on project.
func (a *ACL) AllowProject(project, capability string) bool {
	if a.management {
		return true
	}
	for _, r := range a.projects {
		if ok, _ := path.Match(r.Name, project); ok && slices.Contains(r.Capabilities, capability) {
			return true
		}
	}
	return false
}

// AllowAnyProject says whether the ACL grants capability on at least one
// project (any project block with it).
func (a *ACL) AllowAnyProject(capability string) bool {
	if a.management {
		return true
	}
	for _, r := range a.projects {
		if slices.Contains(r.Capabilities, capability) {
			return true
		}
	}
	return false
}

// AllowOperator says whether the ACL grants an operator capability.
func (a *ACL) AllowOperator(capability string) bool {
	return a.management || slices.Contains(a.operator, capability)
}
