package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butterfn/butter/hcl/spec"
)

// TestNextStepsCallTheRoute checks that what `butter init` tells a user to
// run matches what it wrote: the curl posts to a route the new project's
// spec declares, and butter dev is among the steps.
func TestNextStepsCallTheRoute(t *testing.T) {
	for _, rt := range Runtimes() {
		t.Run(rt, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			if _, err := Init(dir, "demo", rt); err != nil {
				t.Fatal(err)
			}
			proj, rep := spec.Load(dir)
			if rep.HasErrors() {
				t.Fatalf("the new project does not validate: %v", rep)
			}
			steps := NextSteps(dir, "demo", "127.0.0.1:8080")
			var curl string
			dev := false
			for _, s := range steps {
				dev = dev || strings.HasPrefix(s, "butter dev "+dir)
				if strings.HasPrefix(s, "curl ") {
					curl = s
				}
			}
			if !dev || curl == "" {
				t.Fatalf("next steps lack butter dev or a curl: %q", steps)
			}
			found := false
			for _, f := range proj.Functions {
				for _, tr := range f.Triggers {
					if tr.Type == spec.TriggerHTTP && strings.Contains(curl, "-X "+tr.Method+" ") && strings.Contains(curl, "http://127.0.0.1:8080"+tr.Path+" ") {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("the curl %q calls no route of the new project", curl)
			}
		})
	}
}

// TestRequirementsSayWhatIsTrue guards the python template's
// requirements.txt: it says Butter installs them (package deps does, with
// pip install --target), and how.
func TestRequirementsSayWhatIsTrue(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, "demo", "python"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "functions", "demo", "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Butter installs them with\n# `pip install --target`") {
		t.Errorf("requirements.txt does not say how Butter installs them:\n%s", b)
	}
}
