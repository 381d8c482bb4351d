package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deps"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/pmezard/go-difflib/difflib"
)

// Plan is what deploying a project would change against the revision the
// control plane serves: `butter deploy -dry-run`. Nothing is uploaded or
// recorded to make it.
type Plan struct {
	Project string
	// Active is the serving revision, "" when the project has none (or
	// does not exist); Revision is the one the deploy would record.
	Active, Revision string
	// Functions, Routes, Streams and Secrets are the changes, sorted by
	// name: Op '+' added, '-' removed, '~' changed (Detail says how).
	Functions, Routes, Streams, Secrets []Change
	// SpecDiff is a unified diff of the spec files, "" when they are the
	// same.
	SpecDiff string
}

// Change is one added, removed or changed thing.
type Change struct {
	Op     byte // '+', '-' or '~'
	Name   string
	Detail string
}

// Empty says the deploy would change nothing: the same revision, or one
// whose functions, routes, streams, secrets and specs are the same.
func (p *Plan) Empty() bool {
	return p.Active == p.Revision || (len(p.Functions)+len(p.Routes)+len(p.Streams)+len(p.Secrets) == 0 && p.SpecDiff == "")
}

// MakePlan compiles proj, loaded from dir, as Push would, and compares
// it with the project's active revision on the control plane.
func MakePlan(ctx context.Context, client *api.Client, dir string, proj *spec.Project) (*Plan, error) {
	compiled, _, _, err := compile(ctx, client, dir, proj, deps.Default())
	if err != nil {
		return nil, err
	}
	p := &Plan{Project: proj.Name, Revision: compiled.Revision}
	newJob, err := jobs.RenderJSON(compiled.Job)
	if err != nil {
		return nil, err
	}
	newSpecs, err := specFiles(dir, proj)
	if err != nil {
		return nil, err
	}
	var old api.Revision
	st, _, err := client.Projects().Status(ctx, proj.Name, nil)
	switch {
	case api.StatusCode(err) == 404:
	case err != nil:
		return nil, fmt.Errorf("read project %q: %w", proj.Name, err)
	case st.Active != nil:
		p.Active = st.Active.ID
		r, _, err := client.Revisions().Get(ctx, proj.Name, st.Active.ID, nil)
		if err != nil {
			return nil, fmt.Errorf("read revision %s of project %q: %w", st.Active.ID, proj.Name, err)
		}
		old = *r
	}
	oldFns, err := functionsOf(old.Job)
	if err != nil {
		return nil, fmt.Errorf("revision %s's job: %w", old.ID, err)
	}
	newFns, err := functionsOf(newJob)
	if err != nil {
		return nil, err
	}
	p.Functions = diffFunctions(oldFns, newFns)
	p.Routes = diffSets(old.Routes, routeList(proj))
	p.Streams = diffSets(old.Streams, streamList(proj))
	p.Secrets = diffSets(secretsOf(oldFns), secretsOf(newFns))
	p.SpecDiff = diffSpecs(old.Specs, newSpecs)
	return p, nil
}

// functionsOf reads the functions of a rendered job (JSON): each pool
// task's "function" blocks, by name.
func functionsOf(job []byte) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	if len(job) == 0 {
		return out, nil
	}
	var j struct {
		Job *struct {
			TaskGroups []struct {
				Name  string
				Tasks []struct {
					Config map[string]any
				}
			}
		}
		TaskGroups []struct {
			Name  string
			Tasks []struct {
				Config map[string]any
			}
		}
	}
	if err := json.Unmarshal(job, &j); err != nil {
		return nil, fmt.Errorf("read the job: %w", err)
	}
	groups := j.TaskGroups
	if j.Job != nil {
		groups = j.Job.TaskGroups
	}
	for _, g := range groups {
		for _, t := range g.Tasks {
			fns, _ := t.Config["function"].([]any)
			for _, f := range fns {
				m, ok := f.(map[string]any)
				if !ok {
					continue
				}
				name, _ := m["name"].(string)
				m["pool"] = g.Name
				out[name] = m
			}
		}
	}
	return out, nil
}

// diffFunctions compares functions by name: a changed digest is a code
// change; other settings are named with their old and new values
// (secrets have their own section).
func diffFunctions(old, new map[string]map[string]any) []Change {
	var out []Change
	for name, n := range new {
		o, ok := old[name]
		if !ok {
			out = append(out, Change{Op: '+', Name: name, Detail: fmt.Sprintf("%v, pool %v", n["runtime"], n["pool"])})
			continue
		}
		var what []string
		if o["digest"] != n["digest"] {
			what = append(what, fmt.Sprintf("code %s → %s", short(o["digest"]), short(n["digest"])))
		}
		keys := map[string]bool{}
		for k := range o {
			keys[k] = true
		}
		for k := range n {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			if k != "digest" && k != "bundle" && k != "name" && k != "secret" && !reflect.DeepEqual(o[k], n[k]) {
				ks = append(ks, k)
			}
		}
		sort.Strings(ks)
		for _, k := range ks {
			what = append(what, fmt.Sprintf("%s %s → %s", k, jsonText(o[k]), jsonText(n[k])))
		}
		if len(what) > 0 {
			out = append(out, Change{Op: '~', Name: name, Detail: strings.Join(what, "; ")})
		}
	}
	for name, o := range old {
		if _, ok := new[name]; !ok {
			out = append(out, Change{Op: '-', Name: name, Detail: fmt.Sprintf("%v, pool %v", o["runtime"], o["pool"])})
		}
	}
	sortChanges(out)
	return out
}

// secretsOf lists the functions' secrets as "function: NAME (path#key)".
func secretsOf(fns map[string]map[string]any) []string {
	var out []string
	for name, f := range fns {
		refs, _ := f["secret"].([]any)
		for _, r := range refs {
			m, _ := r.(map[string]any)
			out = append(out, fmt.Sprintf("%s: %v (%v#%v)", name, m["name"], m["path"], m["key"]))
		}
	}
	return out
}

// diffSets compares two lists as sets.
func diffSets(old, new []string) []Change {
	var out []Change
	for _, n := range new {
		if !slices.Contains(old, n) {
			out = append(out, Change{Op: '+', Name: n})
		}
	}
	for _, o := range old {
		if !slices.Contains(new, o) {
			out = append(out, Change{Op: '-', Name: o})
		}
	}
	sortChanges(out)
	return out
}

func sortChanges(c []Change) {
	sort.Slice(c, func(i, j int) bool {
		if c[i].Name != c[j].Name {
			return c[i].Name < c[j].Name
		}
		return c[i].Op < c[j].Op
	})
}

// diffSpecs is a unified diff of the spec files, file by file.
func diffSpecs(old, new map[string]string) string {
	files := map[string]bool{}
	for f := range old {
		files[f] = true
	}
	for f := range new {
		files[f] = true
	}
	var names []string
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, f := range names {
		if old[f] == new[f] {
			continue
		}
		from, to := "a/"+f, "b/"+f
		if _, ok := old[f]; !ok {
			from = "/dev/null"
		}
		if _, ok := new[f]; !ok {
			to = "/dev/null"
		}
		text, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(old[f]), B: difflib.SplitLines(new[f]),
			FromFile: from, ToFile: to, Context: 2,
		})
		b.WriteString(text)
	}
	return b.String()
}

// Write prints the plan for a person.
func (p *Plan) Write(w io.Writer) {
	switch {
	case p.Active == "":
		fmt.Fprintf(w, "Plan for project %q: no revision serves it; the deploy would create revision %s.\n", p.Project, p.Revision)
	case p.Active == p.Revision:
		fmt.Fprintf(w, "Plan for project %q: no changes; revision %s already serves it.\n", p.Project, p.Revision)
		return
	default:
		fmt.Fprintf(w, "Plan for project %q: revision %s → %s.\n", p.Project, p.Active, p.Revision)
	}
	section := func(title string, cs []Change) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, c := range cs {
			if c.Detail != "" {
				fmt.Fprintf(w, "  %c %s: %s\n", c.Op, c.Name, c.Detail)
			} else {
				fmt.Fprintf(w, "  %c %s\n", c.Op, c.Name)
			}
		}
	}
	section("Functions", p.Functions)
	section("Routes", p.Routes)
	section("Streams", p.Streams)
	section("Secrets", p.Secrets)
	if p.SpecDiff != "" {
		fmt.Fprintf(w, "\nSpec files:\n%s", p.SpecDiff)
	}
	if p.Empty() {
		fmt.Fprintln(w, "\nNo function, route, stream, secret or spec changes (the revision differs in its build only, such as the git commit).")
	}
}

func short(v any) string {
	s, _ := v.(string)
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}

func jsonText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
