package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/butterfn/butter/sandbox"
)

// BenchmarkStart measures what confinement adds to an instance start:
// /bin/true started directly, and through the shim (the test binary, as
// `butter _sandbox`; the butter-sandbox binary, when bin/ has it, is the
// one pools prefer). It reports only; no test asserts a duration.
func BenchmarkStart(b *testing.B) {
	if err := sandbox.Available(); err != nil {
		b.Skip(err)
	}
	c := sandbox.Config{Hide: []string{b.TempDir()}}
	run := func(b *testing.B, wrap func(*exec.Cmd) error) {
		for i := 0; i < b.N; i++ {
			cmd := exec.Command("/bin/true")
			if err := wrap(cmd); err != nil {
				b.Fatal(err)
			}
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("unconfined", func(b *testing.B) { run(b, func(*exec.Cmd) error { return nil }) })
	b.Run("shim=test-binary", func(b *testing.B) {
		c := c
		c.Exe = os.Args[0]
		run(b, func(cmd *exec.Cmd) error { return sandbox.Wrap(cmd, c) })
	})
	shim, _ := filepath.Abs(filepath.Join("..", "bin", sandbox.ShimName))
	if _, err := os.Stat(shim); err == nil {
		b.Run("shim=butter-sandbox", func(b *testing.B) {
			c := c
			c.Exe = shim
			run(b, func(cmd *exec.Cmd) error { return sandbox.Wrap(cmd, c) })
		})
	}
}
