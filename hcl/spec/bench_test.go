package spec_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// BenchmarkDecode measures loading the iot example: parsing, decoding,
// resolving references and validating. The baseline parses the same files
// with hcl/v2 alone, so the ratio is what Butter's decoding adds.
func BenchmarkDecode(b *testing.B) {
	dir := filepath.Join("..", "..", "examples", "iot")
	files, _ := filepath.Glob(filepath.Join(dir, "*.fn.hcl"))
	srcs := make([][]byte, len(files))
	for i, f := range files {
		var err error
		if srcs[i], err = os.ReadFile(f); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			p := hclparse.NewParser()
			for i, src := range srcs {
				if _, diags := p.ParseHCL(src, files[i]); diags.HasErrors() {
					b.Fatal(diags)
				}
			}
		}
	})
	b.Run("spec", func(b *testing.B) {
		for b.Loop() {
			if proj, rep := spec.Load(dir); proj == nil {
				b.Fatal(rep.Diags)
			}
		}
	})
}
