package acl_test

import (
	"strings"
	"testing"

	"github.com/butterfn/butter/acl"
)

func TestParseAndAllow(t *testing.T) {
	src := `
project "iot" { capabilities = ["deploy", "read", "keys"] }
project "web-*" { capabilities = ["read"] }
operator { capabilities = ["snapshot"] }
`
	p, err := acl.Parse("p.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a := acl.New(p)
	for _, c := range []struct {
		project, cap string
		want         bool
	}{
		{"iot", "deploy", true}, {"iot", "keys", true}, {"web-a", "read", true},
		{"web-a", "deploy", false}, {"other", "read", false}, {"iotx", "read", false},
	} {
		if got := a.AllowProject(c.project, c.cap); got != c.want {
			t.Errorf("AllowProject(%q, %q) = %v, want %v", c.project, c.cap, got, c.want)
		}
	}
	if !a.AllowOperator("snapshot") || a.AllowOperator("raft") {
		t.Errorf("operator: snapshot %v raft %v, want true false", a.AllowOperator("snapshot"), a.AllowOperator("raft"))
	}
	if !a.AllowAnyProject("read") || a.AllowAnyProject("nothing") {
		t.Error("AllowAnyProject")
	}
	if a.IsManagement() || !acl.Management().AllowProject("x", "deploy") || !acl.Management().AllowOperator("raft") {
		t.Error("management")
	}
	if acl.New().AllowProject("iot", "read") {
		t.Error("an empty ACL allows")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"unknown capability", `project "iot" { capabilities = ["deploy", "write"] }`, `p.hcl:1:43: project "iot": unknown capability "write": valid ones are "deploy", "read", "keys"`},
		{"unknown operator capability", "\noperator { capabilities = [\"read\"] }", `p.hcl:2:28: operator: unknown capability "read": valid ones are "snapshot", "raft"`},
		{"unknown block", `namespace "x" { policy = "read" }`, `p.hcl:1:1: unknown block "namespace": a policy's blocks are project "<name or glob>", operator`},
		{"unknown attribute", `project "x" { policy = "read" }`, `p.hcl:1:15: project "x": unknown attribute "policy"`},
		{"missing capabilities", `project "x" {}`, `p.hcl:1:1: project "x": missing capabilities`},
		{"no label", `project { capabilities = ["read"] }`, `p.hcl:1:1: a project block takes one label`},
		{"operator label", `operator "x" { capabilities = ["raft"] }`, `p.hcl:1:10: the operator block takes no label`},
		{"bad glob", `project "[" { capabilities = ["read"] }`, `p.hcl:1:9: project "[": not a valid name or glob`},
		{"not a list", `project "x" { capabilities = "read" }`, `p.hcl:1:30: project "x": capabilities must be a list of strings`},
		{"a number", `project "x" { capabilities = [1] }`, `capabilities must be a list of strings`},
		{"variable", `project "x" { capabilities = [read] }`, `p.hcl:1:31: Variables not allowed`},
		{"top attribute", `capabilities = ["read"]`, `p.hcl:1:1: unexpected attribute "capabilities" at the top level`},
		{"syntax", `project "x" {`, `p.hcl:1:13: Unclosed configuration block`},
		{"two operators", "operator { capabilities = [\"raft\"] }\noperator { capabilities = [\"snapshot\"] }", `p.hcl:2:1: a second operator block`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := acl.Parse("p.hcl", []byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", c.src, err, c.want)
			}
		})
	}
}

// FuzzParse feeds the policy parser arbitrary text: it must never panic,
// and what it accepts must use only valid capabilities. make fuzz runs it
// for a bounded time; go test runs the seeds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`project "iot" { capabilities = ["deploy", "read", "keys"] }`,
		`project "*" { capabilities = ["read"] }` + "\n" + `operator { capabilities = ["snapshot", "raft"] }`,
		`project "a?" { capabilities = [] }`,
		`project "x" { capabilities = ["read", "read"] }`,
		`operator { capabilities = ["raft"] } # comment`,
		`project "[" { capabilities = ["read"] }`,
		`project "x" { capabilities = ["${"a"}"] }`,
		`project "x" { capabilities = [for c in ["read"] : c] }`,
		"project \"x\" {\n  capabilities = [\n    \"read\",\n  ]\n}\n",
		``, `{`, `project`, `operator {}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := acl.Parse("fuzz.hcl", []byte(src))
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.hcl") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		for _, r := range p.Projects {
			for _, c := range r.Capabilities {
				if c != acl.CapDeploy && c != acl.CapRead && c != acl.CapKeys {
					t.Errorf("accepted project capability %q", c)
				}
			}
		}
		for _, c := range p.Operator {
			if c != acl.CapSnapshot && c != acl.CapRaft {
				t.Errorf("accepted operator capability %q", c)
			}
		}
	})
}
