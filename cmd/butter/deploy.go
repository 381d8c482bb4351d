package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
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
	af := addAPIFlags(fset)
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
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	// Uploading the bundles may take a while: longer than one call.
	ctx, cancel := context.WithTimeout(context.Background(), 5*callTimeout)
	defer cancel()
	out, err := recordRevision(ctx, c.ui, client, dir, proj)
	if err != nil {
		return failed(c.ui, err)
	}
	what := "unchanged; re-activated"
	if out.New {
		what = "new"
	}
	c.ui.Output(fmt.Sprintf("Revision %s of project %q is active (%s).", out.Revision, proj.Name, what))
	return follow(c.ui, client, proj.Name, out.Revision, out.Deployer && !*detach, *timeout)
}

// recordRevision uploads the project's bundles and records a revision of
// it, which becomes the active one.
func recordRevision(ctx context.Context, ui cli.Ui, client *api.Client, dir string, proj *spec.Project) (*api.RevisionCreateResponse, error) {
	sha, dirty := gitSHA(dir)
	opts := []jobs.Option{jobs.WithBlobURL(client.Blobs().URL())}
	if sha != "" {
		tag := sha
		if dirty {
			tag += "-dirty"
		}
		opts = append(opts, jobs.WithGitSHA(tag))
	}
	compiled, err := jobs.Compile(proj, opts...)
	if err != nil {
		return nil, err
	}
	fsys := os.DirFS(dir)
	bundles := map[string]string{}
	for i, a := range compiled.Artifacts {
		var buf bytes.Buffer
		if a.IsSchema {
			b, err := fs.ReadFile(fsys, a.Path)
			if err != nil {
				return nil, err
			}
			buf.Write(b)
		} else if _, err := bundle.Write(fsys, a.Path, &buf); err != nil {
			return nil, err
		}
		ui.Output(fmt.Sprintf("==> [%d/%d] uploading %s (%d bytes, %s)", i+1, len(compiled.Artifacts), a.Path, buf.Len(), a.Digest))
		if _, err := client.Blobs().Put(ctx, string(a.Digest), &buf, int64(buf.Len())); err != nil {
			return nil, fmt.Errorf("upload %s: %w", a.Path, err)
		}
		bundles[a.Path] = string(a.Digest)
	}
	specs := map[string]string{}
	for _, f := range proj.Files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		specs[filepath.ToSlash(f)] = string(b)
	}
	jobJSON, err := jobs.RenderJSON(compiled.Job)
	if err != nil {
		return nil, err
	}
	var timers []*api.Timer
	for _, t := range jobs.Timers(proj) {
		timers = append(timers, &api.Timer{ID: t.ID, Schedule: t.Schedule, Timezone: t.Timezone, Topic: t.Topic})
	}
	out, err := client.Revisions().Create(ctx, proj.Name, &api.RevisionCreateRequest{
		ID: compiled.Revision, Specs: specs, Bundles: bundles,
		GitSHA: sha, Dirty: dirty, Author: os.Getenv("USER"), Job: json.RawMessage(jobJSON),
		Timers: timers, Routes: routeList(proj), Streams: streamList(proj),
	})
	if err != nil {
		return nil, fmt.Errorf("record the revision: %w", err)
	}
	return out, nil
}

// follow watches the revision's deployment when asked, and turns the
// outcome into an exit code.
func follow(ui cli.Ui, client *api.Client, project, revision string, watch bool, timeout time.Duration) int {
	if !watch {
		return exitOK
	}
	if err := watchDeployment(ui, client, project, revision, timeout); err != nil {
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
	project, af, err := projectArgs("revisions", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	revs, _, err := client.Revisions().List(ctx, project, nil)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("%-14s %-8s %-10s %-30s %s", "Revision", "Active", "Status", "Created", "Git"))
	for _, r := range revs {
		active := ""
		if r.Active {
			active = "*"
		}
		git := r.GitSHA
		if r.Dirty {
			git += "-dirty"
		}
		c.ui.Output(fmt.Sprintf("%-14s %-8s %-10s %-30s %s", r.ID, active, or(r.Deployment.Status, "-"), r.Created.Format(time.RFC3339Nano), git))
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
	project, af, err := projectArgs("rollback", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := client.Revisions().Rollback(ctx, project)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("Project %q rolled back to revision %s.", project, out.Revision))
	return follow(c.ui, client, project, out.Revision, out.Deployer, 10*time.Minute)
}

// projectArgs parses the arguments of a command that takes the API flags
// and one project name.
func projectArgs(name string, args []string) (project string, af apiFlags, err error) {
	fset := newFlagSet(name)
	af = addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return "", af, err
	}
	return pos[0], af, nil
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
