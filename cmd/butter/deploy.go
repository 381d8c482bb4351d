package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/deploy"
	"github.com/butterfn/butter/hcl/spec"
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

  -dry-run
    Print what the deploy would change against the serving revision
    (functions added, removed or changed and how, routes, streams,
    secrets by name, and a diff of the spec files), and change nothing:
    no upload, no revision.

  -progress
    Print each upload (on a terminal, its bytes counting up) and each
    change of the deployment (its groups' counts, each allocation's state
    and health) as it happens. On by
    default when standard output is a terminal; off in a pipe, where only
    the outcome is printed (with the allocations of a failed deployment).
` + varHelp + canaryHelp + addrHelp)
}

func (c *deployCommand) Run(args []string) int {
	fset := newFlagSet("deploy")
	vf := addVarFlags(fset)
	af := addAPIFlags(fset)
	detach := fset.Bool("detach", false, "")
	timeout := fset.Duration("timeout", 10*time.Minute, "")
	progress := fset.Bool("progress", isTerminal(os.Stdout), "")
	dryRun := fset.Bool("dry-run", false, "")
	cf := addCanaryFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	canary, err := cf.request()
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	proj, rep := spec.Load(dir, vf.options()...)
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
	if *dryRun {
		plan, err := deploy.MakePlan(ctx, client, dir, proj)
		if err != nil {
			return failed(c.ui, err)
		}
		plan.Write(os.Stdout)
		return exitOK
	}
	// On a terminal each upload is one line, its bytes counting up; with
	// -progress in a pipe, one line before each upload.
	live := newLiveLine(os.Stdout, isTerminal(os.Stdout))
	if *progress {
		live.Update(fmt.Sprintf("==> bundling project %q's functions", proj.Name)) // replaced by the first upload
	}
	out, err := deploy.Push(ctx, client, dir, proj, deploy.WithProgress(func(u deploy.Upload) {
		if !*progress {
			return
		}
		head := fmt.Sprintf("==> [%d/%d] uploading %s", u.N, u.Total, u.Path)
		switch {
		case !live.live:
			if u.Sent == 0 && !u.Done {
				c.ui.Output(fmt.Sprintf("%s (%d bytes, %s)", head, u.Size, u.Digest))
			}
		case u.Done:
			live.Done(fmt.Sprintf("%s: %s, %s", head, byteSize(int64(u.Size)), u.Digest))
		default:
			live.Update(head + ": " + fraction(u.Sent, int64(u.Size)))
		}
	}), deploy.WithCanary(canary))
	live.Clear() // the bundling line, when nothing was uploaded
	if err != nil {
		return failed(c.ui, err)
	}
	what := "unchanged; re-activated"
	if out.New {
		what = "new"
	}
	if canary != nil {
		c.ui.Output(fmt.Sprintf("Revision %s of project %q is deployed as a canary (%s).", out.Revision, proj.Name, what))
		if !out.Deployer || *detach {
			return exitOK
		}
		if err := watchCanary(c.ui, client, proj.Name, out.Revision, len(canary.Steps) > 0, *timeout); err != nil {
			if !errors.Is(err, errDeployFailed) {
				c.ui.Error("Error: " + err.Error())
			}
			return exitInvalid
		}
		return exitOK
	}
	c.ui.Output(fmt.Sprintf("Revision %s of project %q is active (%s).", out.Revision, proj.Name, what))
	return follow(c.ui, client, proj.Name, out.Revision, out.Deployer && !*detach, *progress, *timeout)
}

// follow watches the revision's deployment when asked, and turns the
// outcome into an exit code.
func follow(ui cli.Ui, client *api.Client, project, revision string, watch, progress bool, timeout time.Duration) int {
	if !watch {
		return exitOK
	}
	if err := watchDeployment(ui, client, project, revision, progress, timeout); err != nil {
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
	return follow(c.ui, client, project, out.Revision, out.Deployer, isTerminal(os.Stdout), 10*time.Minute)
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
