// Package scaffold creates new Butter projects for `butter init`: a spec
// file and a hello-world function in the chosen runtime, ready to
// validate and render.
//
// Neighbours: cmd/butter calls it; package spec validates what it writes.
package scaffold

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

//go:embed templates
var templates embed.FS

// Runtimes lists the runtimes Init has templates for.
func Runtimes() []string {
	entries, _ := templates.ReadDir("templates")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// Init writes a new project named name into dir for the given runtime. It
// refuses to overwrite any existing file, and writes nothing in that case.
// It returns the files written, relative to dir.
func Init(dir, name, runtime string) ([]string, error) {
	root := path.Join("templates", runtime)
	if _, err := fs.Stat(templates, root); err != nil {
		return nil, fmt.Errorf("no template for runtime %q: use one of %s", runtime, strings.Join(Runtimes(), ", "))
	}
	type file struct {
		rel  string
		data []byte
		mode os.FileMode
	}
	var files []file
	err := fs.WalkDir(templates, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		src, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(p).Parse(string(src))
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, struct{ Name string }{name}); err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		rel = strings.ReplaceAll(rel, "NAME", name)
		if rel == "project.fn.hcl" {
			rel = name + ".fn.hcl"
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		files = append(files, file{rel, buf.Bytes(), mode})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.rel)); err == nil {
			return nil, fmt.Errorf("init %s: %s already exists; choose an empty directory", dir, filepath.Join(dir, f.rel))
		}
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, fmt.Errorf("init %s: %w", dir, err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return written, fmt.Errorf("init %s: %w", dir, err)
		}
		written = append(written, f.rel)
	}
	// butter dev keeps its state and the local secrets file under .butter/:
	// keep them out of git, unless the directory already has a .gitignore.
	gi := filepath.Join(dir, ".gitignore")
	if _, err := os.Stat(gi); os.IsNotExist(err) {
		if err := os.WriteFile(gi, []byte(gitignore), 0o644); err != nil {
			return written, fmt.Errorf("init %s: %w", dir, err)
		}
		written = append(written, ".gitignore")
	}
	sort.Strings(written)
	return written, nil
}

// gitignore is a new project's .gitignore.
const gitignore = `# butter dev's state and local secrets (docs/secrets-dev.md)
.butter/
`

// NextSteps are the commands `butter init` suggests for a new project in
// dir: validate it, run it with `butter dev` (whose gateway listens on
// gateway, as "host:port"), call its function with curl, and render its
// Nomad job. The curl calls the route the template declares.
func NextSteps(dir, name, gateway string) []string {
	return []string{
		"butter validate " + dir,
		"butter dev " + dir + "    # the whole platform on this machine, with the project deployed",
		"curl -s -X POST --data-binary 'hello' http://" + gateway + "/" + name + "    # in another terminal, while butter dev runs",
		"butter job render " + dir + "    # the Nomad job, for nomad job run",
	}
}
