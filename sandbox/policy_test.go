package sandbox_test

import (
	"reflect"
	"testing"

	"github.com/butterfn/butter/sandbox"
)

// TestForTask: outside Nomad only the task's secrets are hidden; under
// Nomad every allocation is, except this task's local and tmp directories
// and the allocation's shared directory. Paths to keep are allowed, blanks
// and "." (filepath.Dir of an empty path) skipped.
func TestForTask(t *testing.T) {
	for _, c := range []struct {
		name      string
		env       map[string]string
		keep      []string
		wantHide  []string
		wantAllow []string
	}{
		{
			name:     "outside Nomad",
			keep:     []string{"/sdk/node", "", ".", "/tmp"},
			wantHide: []string{"/task/secrets"}, wantAllow: []string{"/sdk/node", "/tmp"},
		},
		{
			name:      "under Nomad",
			env:       map[string]string{"NOMAD_ALLOC_DIR": "/nomad/alloc/a1/alloc", "NOMAD_TASK_DIR": "/nomad/alloc/a1/pool/local"},
			keep:      []string{"/sdk/go"},
			wantHide:  []string{"/nomad/alloc"},
			wantAllow: []string{"/nomad/alloc/a1/alloc", "/nomad/alloc/a1/pool/local", "/nomad/alloc/a1/pool/tmp", "/sdk/go"},
		},
		{
			name:     "alloc dir without task dir",
			env:      map[string]string{"NOMAD_ALLOC_DIR": "/nomad/alloc/a1/alloc"},
			wantHide: []string{"/nomad/alloc"}, wantAllow: []string{"/nomad/alloc/a1/alloc"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := sandbox.ForTask("/task", func(k string) string { return c.env[k] }, c.keep...)
			if !reflect.DeepEqual(got.Hide, c.wantHide) || !reflect.DeepEqual(got.Allow, c.wantAllow) {
				t.Errorf("ForTask = hide %q allow %q, want hide %q allow %q", got.Hide, got.Allow, c.wantHide, c.wantAllow)
			}
		})
	}
}

// TestForFunction: a function's instances lose the other functions'
// bundles but keep their own, also when two functions share a bundle or
// one bundle holds another's.
func TestForFunction(t *testing.T) {
	base := sandbox.Config{Exe: "/bin/shim", Hide: []string{"/alloc"}, Allow: []string{"/alloc/t/local"}}
	got := sandbox.ForFunction(base, "/alloc/t/local/a", []string{"/alloc/t/local/a", "/alloc/t/local/b", "", "/alloc/t/local/a", "/alloc/t/local", "/alloc/t/local/b"})
	want := sandbox.Config{Exe: "/bin/shim", Hide: []string{"/alloc", "/alloc/t/local/b"}, Allow: []string{"/alloc/t/local", "/alloc/t/local/a"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ForFunction = %+v, want %+v", got, want)
	}
	if len(base.Hide) != 1 || len(base.Allow) != 1 {
		t.Errorf("ForFunction changed its base: %+v", base)
	}
}
