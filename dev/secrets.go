package dev

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/secrets"
)

// HasSecrets says whether any function of p declares a secret: only then
// does butter dev read secrets and confine the functions.
func HasSecrets(p *spec.Project) bool {
	for _, f := range p.Functions {
		if len(f.Secrets) > 0 {
			return true
		}
	}
	return false
}

// secrets is where butter dev finds the values of the functions'
// secrets: the secrets file, then its own environment. Both are read on
// each deploy.
func (d *env) secrets() secrets.Source {
	return secrets.Chain{secrets.Dotenv{Path: d.secretsFile}, secrets.Env{}}
}

// printSecrets says which secrets each function gets and from where,
// never their values.
func (d *env) printSecrets(proj *spec.Project) {
	if !HasSecrets(proj) {
		return
	}
	file := secrets.Dotenv{Path: d.secretsFile}
	shown := d.secretsFile
	if rel, err := filepath.Rel(d.dir, d.secretsFile); err == nil && !strings.HasPrefix(rel, "..") {
		shown = rel
	}
	d.ui.Output("    secrets (functions run confined):")
	for _, f := range proj.Functions {
		if len(f.Secrets) == 0 {
			continue
		}
		var from []string
		for _, s := range f.Secrets {
			where := "environment"
			if key, err := file.Key(f.Name, s.Name); err == nil && key != "" {
				where = shown + " " + key
			}
			from = append(from, fmt.Sprintf("%s (%s)", s.Name, where))
		}
		d.ui.Output(fmt.Sprintf("      %s: %s", f.Name, strings.Join(from, ", ")))
	}
}
