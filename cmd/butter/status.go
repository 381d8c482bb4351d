package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/deploy"
	"golang.org/x/term"
	"os"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/hashicorp/cli"
)

type statusCommand struct{ ui cli.Ui }

func (c *statusCommand) Synopsis() string {
	return "Show projects, their active revision and its deployment"
}
func (c *statusCommand) Help() string {
	return trimHelp(`
Usage: butter status [options] [project]

  Without a project, lists the projects with their active revision and its
  deployment state. With one, shows the active revision, what the deployer
  last saw of its Nomad deployment, and the project's timers.

  Deployment states: pending (activated, not yet registered with Nomad),
  deploying (Nomad's deployment in progress), healthy, failed (with the
  reason, and the automatic rollback when there was one). Under butter dev,
  which runs no Nomad, a revision is healthy once its pool serves it, and
  failed when that pool cannot keep a function's minimum instances.

Options:
` + addrHelp)
}

func (c *statusCommand) Run(args []string) int {
	fset := newFlagSet("status")
	af := addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if len(pos) == 1 {
		st, _, err := client.Projects().Status(ctx, pos[0], nil)
		if err != nil {
			return failed(c.ui, err)
		}
		c.show(st)
		return exitOK
	}
	list, _, err := client.Projects().List(ctx, nil)
	if err != nil {
		return failed(c.ui, err)
	}
	if len(list.Projects) == 0 {
		c.ui.Output("No projects. Deploy one with: butter deploy <dir>")
		return exitOK
	}
	c.ui.Output(fmt.Sprintf("%-20s %-14s %-10s %s", "Project", "Revision", "Status", "Message"))
	for _, p := range list.Projects {
		st, _, err := client.Projects().Status(ctx, p, nil)
		if err != nil {
			return failed(c.ui, err)
		}
		if st.Active == nil {
			c.ui.Output(fmt.Sprintf("%-20s %-14s %-10s", p, "-", "-"))
			continue
		}
		c.ui.Output(fmt.Sprintf("%-20s %-14s %-10s %s", p, st.Active.ID, st.Active.Deployment.Status, st.Active.Deployment.Message))
	}
	return exitOK
}

func (c *statusCommand) show(st *api.ProjectStatus) {
	c.ui.Output(fmt.Sprintf("Project    %s (%d revisions)", st.Project, st.Revisions))
	if d := st.Deleting; d != nil {
		c.ui.Output(fmt.Sprintf("Deleting   since %s: %s", d.At.Format(time.RFC3339), d.Message))
	}
	if st.Active == nil {
		c.ui.Output("Active     none")
		return
	}
	a := st.Active
	git := a.GitSHA
	if a.Dirty {
		git += "-dirty"
	}
	c.ui.Output(fmt.Sprintf("Active     %s (created %s by %s, git %s)", a.ID, a.Created.Format(time.RFC3339), or(a.Author, "-"), or(git, "-")))
	d := a.Deployment
	c.ui.Output(fmt.Sprintf("Status     %s", or(d.Status, "-")))
	if d.Message != "" {
		c.ui.Output(fmt.Sprintf("Message    %s", d.Message))
	}
	if d.NomadDeployment != "" {
		c.ui.Output(fmt.Sprintf("Nomad      job version %d, deployment %s", d.JobVersion, d.NomadDeployment))
	}
	if st.Canary != nil {
		for _, l := range canaryLines(st.Canary) { // canary.go
			c.ui.Output(l)
		}
	}
	for i, r := range a.Routes {
		c.ui.Output(fmt.Sprintf("%-10s %s", map[bool]string{true: "Routes", false: ""}[i == 0], r))
	}
	for i, r := range a.Streams {
		c.ui.Output(fmt.Sprintf("%-10s %s", map[bool]string{true: "Streams", false: ""}[i == 0], r))
	}
	if len(st.Timers) > 0 {
		c.ui.Output("Timers")
		for _, t := range st.Timers {
			last := "never"
			if !t.LastFired.IsZero() {
				last = t.LastFired.Format(time.RFC3339)
			}
			c.ui.Output(fmt.Sprintf("  %-30s %-20s %-16s last fired %s", t.ID, t.Schedule, or(t.Timezone, "UTC"), last))
		}
	}
	c.showPools(st.Pools) // status_pools.go
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// errDeployFailed is returned by watchDeployment for a failed revision.
var errDeployFailed = errors.New("deployment failed")

// watchDeployment follows the revision's deployment until it is
// healthy, failed, or replaced, or until timeout; with progress, it
// prints each change of its state: the message, then each allocation
// whose state changed (as `nomad job run` does).
func watchDeployment(ui cli.Ui, client *api.Client, project, revision string, progress bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := map[string]string{} // allocation id → its last printed line
	res, err := deploy.Watch(ctx, client, project, revision, func(d api.DeployStatus) {
		if !progress {
			return
		}
		ui.Output(fmt.Sprintf("==> %s  %s", time.Now().Format("15:04:05"), d.Status+": "+d.Message))
		for _, a := range d.Allocations {
			if line := allocLine(a); seen[a.ID] != line {
				seen[a.ID] = line
				ui.Output("    " + line)
			}
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("revision %s still %s after %s; it keeps deploying: follow it with butter status %s", revision, or(res.Status, "pending"), timeout, project)
		}
		return err
	}
	switch res.Outcome {
	case deploy.Healthy:
		ui.Output(fmt.Sprintf("Revision %s of project %q is healthy.", revision, project))
		return nil
	case deploy.Failed:
		if !progress {
			// Why it failed, which progress would have printed.
			ui.Output(fmt.Sprintf("==> %s  %s", time.Now().Format("15:04:05"), res.Status+": "+res.Message))
		}
		if res.Active != "" && res.Active != revision {
			ui.Error(fmt.Sprintf("Revision %s failed; project %q is back on revision %s (butter status %s follows it).", revision, project, res.Active, project))
		} else {
			ui.Error(fmt.Sprintf("Revision %s failed and stays active; fix it and deploy again, or run butter rollback %s.", revision, project))
		}
		for _, a := range res.Deployment.Allocations {
			ui.Error("    " + allocLine(a))
		}
		return errDeployFailed
	default:
		ui.Output(fmt.Sprintf("Revision %s is no longer active: %s replaced it.", revision, res.Active))
		return nil
	}
}

// allocLine is one allocation of a deployment, as watchDeployment prints
// it: "allocation 1a2b3c4d (group default, node n1): running, healthy".
func allocLine(a api.AllocState) string {
	health := "health unknown"
	if a.Healthy != nil {
		health = map[bool]string{true: "healthy", false: "unhealthy"}[*a.Healthy]
	}
	line := fmt.Sprintf("allocation %s (group %s", short8(a.ID), a.Group)
	if a.Node != "" {
		line += ", node " + a.Node
	}
	line += "): " + a.Status + ", " + health
	if a.Task != "" {
		line += " — " + a.Task
	}
	return line
}

func short8(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// isTerminal reports whether f is a terminal: progress is printed there,
// and not in a pipe.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
