package jobs_test

import (
	"encoding/json"
	"testing"

	"github.com/butterfn/butter/jobs"
)

// BenchmarkRender measures rendering the iot example's job. The baseline
// is encoding/json over the same api.Job, the cheapest faithful rendering.
func BenchmarkRender(b *testing.B) {
	proj := load(b, "../examples/iot")
	c, err := jobs.Compile(proj)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(c.Job); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hcl", func(b *testing.B) {
		for b.Loop() {
			if _, err := jobs.RenderHCL(c.Job); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if _, err := jobs.RenderJSON(c.Job); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCompile measures compiling the iot example, bundle hashing
// included. Its baseline is decoding alone, which compiling starts from.
func BenchmarkCompile(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			load(b, "../examples/iot")
		}
	})
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := jobs.Compile(load(b, "../examples/iot")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
