package sandbox

import (
	"path/filepath"
	"strings"
)

// ForTask says what the instances of a pool running in task directory
// dir cannot see. Under Nomad (getenv gives $NOMAD_ALLOC_DIR) that is
// every allocation's directory (the alloc root), this task's secrets
// directory included, except this task's local and tmp directories
// ($NOMAD_TASK_DIR and its sibling tmp) and the allocation's shared
// directory; elsewhere, dir's secrets/. keep are paths the instances use
// wherever they are (the SDKs, the Go build cache, the temporary
// directory); empty entries and "." are skipped.
func ForTask(dir string, getenv func(string) string, keep ...string) Config {
	c := Config{Hide: []string{filepath.Join(dir, "secrets")}}
	if allocShared := getenv("NOMAD_ALLOC_DIR"); allocShared != "" {
		allocRoot := filepath.Dir(filepath.Dir(allocShared))
		c.Hide = []string{allocRoot}
		c.Allow = append(c.Allow, allocShared)
		if d := getenv("NOMAD_TASK_DIR"); d != "" {
			c.Allow = append(c.Allow, d, filepath.Join(filepath.Dir(d), "tmp"))
		}
	}
	for _, p := range keep {
		if p != "" && p != "." {
			c.Allow = append(c.Allow, p)
		}
	}
	return c
}

// ForFunction is the confinement of one function's instances in a pool
// confined by base: base, with the bundles of the pool's functions
// hidden too, but own (the function's own bundle) and the bundles that
// contain it. A bundle equal to own (two functions sharing one
// directory) stays usable; "" entries are skipped.
func ForFunction(base Config, own string, bundles []string) Config {
	c := Config{Exe: base.Exe, Hide: append([]string(nil), base.Hide...), Allow: append([]string(nil), base.Allow...)}
	seen := map[string]bool{}
	for _, b := range bundles {
		if b == "" || b == "." || seen[b] {
			continue
		}
		seen[b] = true
		if own != "" && (b == own || strings.HasPrefix(own, b+string(filepath.Separator))) {
			continue
		}
		c.Hide = append(c.Hide, b)
	}
	if own != "" && own != "." {
		c.Allow = append(c.Allow, own)
	}
	return c
}
