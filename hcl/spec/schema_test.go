package spec_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
)

// TestSchemaCompiled: validate compiles each schema file as the pool will:
// one that is JSON but not a valid JSON Schema, or whose $ref names a file
// that is not there, is an error at its attribute; one whose $ref names
// another file of the project compiles.
func TestSchemaCompiled(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string // "" for no error
	}{
		{"valid", `{"type": "object", "properties": {"x": {"$ref": "defs.json#/$defs/x"}}}`, ""},
		{"bad keyword value", `{"type": 12}`, "Schema does not compile"},
		{"missing ref", `{"$ref": "nowhere.json"}`, "Schema does not compile"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"p.fn.hcl": {Data: []byte(`
project "p" {}
function "f" {
  runtime = "exec"
  command = ["cat"]
  input_schema = "in.json"
}
`)},
				"in.json":   {Data: []byte(c.in)},
				"defs.json": {Data: []byte(`{"$defs": {"x": {"type": "number"}}}`)},
			}
			_, rep := spec.LoadFS(fsys, ".")
			var got []string
			for _, d := range rep.Diags {
				got = append(got, d.Summary+": "+d.Detail)
			}
			all := strings.Join(got, "\n")
			if c.want == "" {
				if rep.HasErrors() {
					t.Fatalf("errors for a valid schema: %s", all)
				}
				return
			}
			if !strings.Contains(all, c.want) || !strings.Contains(all, "in.json") {
				t.Errorf("diagnostics %q, want %q naming in.json", all, c.want)
			}
		})
	}
}
