package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/butterfn/butter/bundle"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/routes"
	"github.com/hashicorp/cli"
)

type deployCommand struct{ ui cli.Ui }

func (c *deployCommand) Synopsis() string { return "Deploy a project as a new revision" }
func (c *deployCommand) Help() string {
	return trimHelp(`
Usage: butter deploy [options] [dir]

  Validates the project in dir (default: the current directory), uploads each
  function's bundle to the control plane by content hash, and records a
  revision (spec files, bundle digests, git commit, the rendered job, the
  cron timers) that becomes the project's active revision. Deploying
  unchanged content activates the existing revision.

  When the control plane deploys to Nomad, the command then follows the
  deployment and prints its progress until the revision is healthy (exit 0)
  or failed (exit 1; a failed revision is rolled back to the last healthy
  one unless the project's deploy block sets auto_rollback = false).

Options:

  -detach
    Return once the revision is recorded, without following the deployment.

  -timeout=10m
    How long to follow the deployment. The deployment goes on after it.
` + addrHelp)
}

// gitSHA returns the commit of dir's work tree, with "-dirty" when it has
// changes, or "" outside git.
func gitSHA(dir string) (sha string, dirty bool) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	sha = strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain", ".").Output()
	return sha, err == nil && len(bytes.TrimSpace(st)) > 0
}

func (c *deployCommand) Run(args []string) int {
	fset := newFlagSet("deploy")
	addr := fset.String("address", "", "")
	detach := fset.Bool("detach", false, "")
	timeout := fset.Duration("timeout", 10*time.Minute, "")
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	proj, rep := spec.Load(dir)
	if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
		return exitInvalid
	}
	base := serverAddr(*addr)
	out, err := recordRevision(c.ui, base, dir, proj)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	what := "unchanged; re-activated"
	if out.New {
		what = "new"
	}
	c.ui.Output(fmt.Sprintf("Revision %s of project %q is active (%s).", out.Revision, proj.Name, what))
	return follow(c.ui, base, proj.Name, out.Revision, out.Deployer && !*detach, *timeout)
}

// revisionResult is the control plane's answer to a new revision.
type revisionResult struct {
	Revision string
	New      bool
	Deployer bool
}

// recordRevision uploads the project's bundles and records a revision of
// it, which becomes the active one.
func recordRevision(ui cli.Ui, base, dir string, proj *spec.Project) (revisionResult, error) {
	sha, dirty := gitSHA(dir)
	opts := []jobs.Option{jobs.WithBlobURL(base + "/v1/blobs")}
	if sha != "" {
		tag := sha
		if dirty {
			tag += "-dirty"
		}
		opts = append(opts, jobs.WithGitSHA(tag))
	}
	compiled, err := jobs.Compile(proj, opts...)
	if err != nil {
		return revisionResult{}, err
	}
	fsys := os.DirFS(dir)
	bundles := map[string]string{}
	for i, a := range compiled.Artifacts {
		var buf bytes.Buffer
		if a.IsSchema {
			b, err := fs.ReadFile(fsys, a.Path)
			if err != nil {
				return revisionResult{}, err
			}
			buf.Write(b)
		} else if _, err := bundle.Write(fsys, a.Path, &buf); err != nil {
			return revisionResult{}, err
		}
		ui.Output(fmt.Sprintf("==> [%d/%d] uploading %s (%d bytes, %s)", i+1, len(compiled.Artifacts), a.Path, buf.Len(), a.Digest))
		resp, err := callAPI("PUT", base+"/v1/blobs/sha256/"+a.Digest.Hex(), &buf, int64(buf.Len()))
		if err != nil {
			return revisionResult{}, fmt.Errorf("upload %s: %w", a.Path, err)
		}
		resp.Body.Close()
		bundles[a.Path] = string(a.Digest)
	}
	specs := map[string]string{}
	for _, f := range proj.Files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return revisionResult{}, err
		}
		specs[filepath.ToSlash(f)] = string(b)
	}
	jobJSON, err := jobs.RenderJSON(compiled.Job)
	if err != nil {
		return revisionResult{}, err
	}
	author := os.Getenv("USER")
	timers := []map[string]string{}
	for _, t := range jobs.Timers(proj) {
		timers = append(timers, map[string]string{"id": t.ID, "schedule": t.Schedule, "timezone": t.Timezone, "topic": t.Topic})
	}
	body, _ := json.Marshal(map[string]any{
		"id": compiled.Revision, "specs": specs, "bundles": bundles,
		"git_sha": sha, "dirty": dirty, "author": author, "job": json.RawMessage(jobJSON),
		"timers": timers, "routes": routeList(proj), "streams": streamList(proj),
	})
	resp, err := callAPI("POST", base+"/v1/projects/"+proj.Name+"/revisions", bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return revisionResult{}, fmt.Errorf("record the revision: %w", err)
	}
	defer resp.Body.Close()
	var out revisionResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return revisionResult{}, err
	}
	return out, nil
}

// follow watches the revision's deployment when asked, and turns the
// outcome into an exit code.
func follow(ui cli.Ui, base, project, revision string, watch bool, timeout time.Duration) int {
	if !watch {
		return exitOK
	}
	if err := watchDeployment(ui, base, project, revision, timeout); err != nil {
		if !errors.Is(err, errDeployFailed) {
			ui.Error("Error: " + err.Error())
		}
		return exitInvalid
	}
	return exitOK
}

type revisionsCommand struct{ ui cli.Ui }

func (c *revisionsCommand) Synopsis() string { return "List a project's revisions" }
func (c *revisionsCommand) Help() string {
	return trimHelp(`
Usage: butter revisions [options] <project>

  Lists the project's revisions, oldest first, and marks the active one.

Options:
` + addrHelp)
}
func (c *revisionsCommand) Run(args []string) int {
	project, addr, err := projectArgs("revisions", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	resp, err := callAPI("GET", serverAddr(addr)+"/v1/projects/"+project+"/revisions", nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer resp.Body.Close()
	var raw []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	c.ui.Output(fmt.Sprintf("%-14s %-8s %-10s %-30s %s", "Revision", "Active", "Status", "Created", "Git"))
	for _, r := range raw {
		dep, _ := r["deployment"].(map[string]any)
		status, _ := dep["status"].(string)
		active := ""
		if r["active"] == true {
			active = "*"
		}
		git, _ := r["git_sha"].(string)
		if r["dirty"] == true {
			git += "-dirty"
		}
		c.ui.Output(fmt.Sprintf("%-14v %-8s %-10s %-30v %s", r["id"], active, or(status, "-"), r["created"], git))
	}
	return exitOK
}

type rollbackCommand struct{ ui cli.Ui }

func (c *rollbackCommand) Synopsis() string { return "Activate a project's previous revision" }
func (c *rollbackCommand) Help() string {
	return trimHelp(`
Usage: butter rollback [options] <project>

  Makes the revision before the active one the project's active revision,
  and follows its deployment like butter deploy.

Options:
` + addrHelp)
}
func (c *rollbackCommand) Run(args []string) int {
	project, addr, err := projectArgs("rollback", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	resp, err := callAPI("POST", serverAddr(addr)+"/v1/projects/"+project+"/rollback", nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer resp.Body.Close()
	var out struct {
		Revision string
		Deployer bool
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	c.ui.Output(fmt.Sprintf("Project %q rolled back to revision %s.", project, out.Revision))
	return follow(c.ui, serverAddr(addr), project, out.Revision, out.Deployer, 10*time.Minute)
}

// projectArgs parses the arguments of a command that takes -address and
// one project name.
func projectArgs(name string, args []string) (project, addr string, err error) {
	fset := newFlagSet(name)
	a := fset.String("address", "", "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return "", "", err
	}
	return pos[0], *a, nil
}

// routeList is the project's http routes, "METHOD /path -> target", as the
// revision records them.
func routeList(p *spec.Project) []string {
	var out []string
	for _, r := range routes.FromSpec(p, "") {
		target := r.Function
		if len(r.Pipeline) > 0 {
			target = strings.Join(r.Pipeline, " | ")
		}
		out = append(out, r.Pattern()+" -> "+target)
	}
	return out
}

// streamList is the project's stream bindings, "function <- topic (group)"
// and "function -> topic", as the revision records them.
func streamList(p *spec.Project) []string {
	var out []string
	for _, f := range p.Functions {
		for _, t := range f.Triggers {
			if t.Type == spec.TriggerStream && t.Stream != nil {
				out = append(out, fmt.Sprintf("%s <- %s (%s)", f.Name, jobs.Topic(p.Name, t.Stream.Name), jobs.ConsumerGroup(p.Name, f.Name, t.Stream.Name)))
			}
		}
		if f.Output != nil {
			out = append(out, fmt.Sprintf("%s -> %s", f.Name, jobs.Topic(p.Name, f.Output.Name)))
		}
	}
	return out
}
