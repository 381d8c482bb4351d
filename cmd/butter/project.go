package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/hashicorp/cli"
)

type projectCommand struct{}

func (c *projectCommand) Synopsis() string { return "Manage projects: delete, quotas" }
func (c *projectCommand) Help() string {
	return trimHelp(`
Usage: butter project <subcommand>

  Project settings kept by the control plane.

Subcommands:

  delete      Delete a project (its job, routes, timers, keys, groups)
  quota get   Show a project's quota
  quota set   Set a project's quota
`)
}
func (c *projectCommand) Run(args []string) int { return cli.RunResultHelp }

type projectQuotaCommand struct{}

func (c *projectQuotaCommand) Synopsis() string { return "Show or set a project's quota" }
func (c *projectQuotaCommand) Help() string {
	return trimHelp(`
Usage: butter project quota <get|set> [options] <project>

  A project's quota bounds its revisions (functions, and the sum of their
  instances.max) and the requests per second the gateways take on its
  routes. See butter project quota set -h.
`)
}
func (c *projectQuotaCommand) Run(args []string) int { return cli.RunResultHelp }

type projectQuotaGetCommand struct{ ui cli.Ui }

func (c *projectQuotaGetCommand) Synopsis() string { return "Show a project's quota" }
func (c *projectQuotaGetCommand) Help() string {
	return trimHelp(`
Usage: butter project quota get [options] <project>

  Shows the project's limits; 0 is no limit.

Options:
` + addrHelp)
}
func (c *projectQuotaGetCommand) Run(args []string) int {
	fset := newFlagSet("project quota get")
	af := addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, _, err := client.Projects().Status(ctx, pos[0], nil)
	if err != nil {
		return failed(c.ui, err)
	}
	printQuota(c.ui, pos[0], st.Quota)
	return exitOK
}

type projectQuotaSetCommand struct{ ui cli.Ui }

func (c *projectQuotaSetCommand) Synopsis() string { return "Set a project's quota" }
func (c *projectQuotaSetCommand) Help() string {
	return trimHelp(`
Usage: butter project quota set [options] <project>

  Sets the project's limits (every one: a limit not given is 0, no limit),
  creating the project when it does not exist. A revision over
  -max-functions or -max-instances is refused when it is deployed; the
  revision already active keeps running. Gateways apply -rps at their next
  refresh, each on its own, and answer 429 over it.

Options:

  -max-functions=N
    The most functions a revision may have.

  -max-instances=N
    The most instances a revision's functions may run in all, per
    allocation: the sum of their instances.max.

  -rps=N
    The most requests per second each gateway takes on the project's
    routes (a decimal; a burst of as many, at least one).
` + addrHelp)
}
func (c *projectQuotaSetCommand) Run(args []string) int {
	fset := newFlagSet("project quota set")
	af := addAPIFlags(fset)
	var q api.Quota
	fset.IntVar(&q.MaxFunctions, "max-functions", 0, "")
	fset.IntVar(&q.MaxInstances, "max-instances", 0, "")
	fset.Float64Var(&q.RequestsPerSecond, "rps", 0, "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := client.Projects().SetQuota(ctx, pos[0], &q)
	if err != nil {
		return failed(c.ui, err)
	}
	if *out == (api.Quota{}) {
		printQuota(c.ui, pos[0], nil)
	} else {
		printQuota(c.ui, pos[0], out)
	}
	return exitOK
}

func printQuota(ui cli.Ui, project string, q *api.Quota) {
	if q == nil {
		ui.Output(fmt.Sprintf("Project %s has no quota.", project))
		return
	}
	limit := func(n float64) string {
		if n == 0 {
			return "no limit"
		}
		return fmt.Sprintf("%g", n)
	}
	ui.Output(fmt.Sprintf("Project %s:\n  max functions        %s\n  max instances        %s\n  requests per second  %s",
		project, limit(float64(q.MaxFunctions)), limit(float64(q.MaxInstances)), limit(q.RequestsPerSecond)))
}

type projectDeleteCommand struct{ ui cli.Ui }

func (c *projectDeleteCommand) Synopsis() string { return "Delete a project" }
func (c *projectDeleteCommand) Help() string {
	return trimHelp(`
Usage: butter project delete [options] <project>

  Deletes the project. At once, its routes stop answering (gateways drop
  them), its timers stop and its API keys are revoked; then the leader
  stops and purges its Nomad job (its allocations stop) and deletes its
  consumer groups, and the project and its revisions are gone. Its Kafka
  topics, which hold its events, are kept unless -purge-topics. While it
  is being deleted, deploys to it are refused (409); deploying it again
  afterwards starts from nothing.

  Waits until the project is gone, saying what it waits for, and exits 0;
  1 when it fails or -timeout passes (the deletion goes on).

Options:

  -purge-topics
    Delete the project's Kafka topics ("<project>.*") too.

  -detach
    Return once the deletion is recorded.

  -timeout=5m
    How long to wait.
` + addrHelp)
}
func (c *projectDeleteCommand) Run(args []string) int {
	fset := newFlagSet("project delete")
	af := addAPIFlags(fset)
	purge := fset.Bool("purge-topics", false, "")
	detach := fset.Bool("detach", false, "")
	timeout := fset.Duration("timeout", 5*time.Minute, "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	name := pos[0]
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	out, err := client.Projects().Delete(ctx, name, *purge)
	cancel()
	if err != nil {
		return failed(c.ui, err)
	}
	what := "its routes, timers and API keys are removed"
	if out.Job != "" {
		what += "; Nomad job " + out.Job + " is being stopped and purged"
	}
	c.ui.Output(fmt.Sprintf("Deleting project %q: %s.", name, what))
	if *detach {
		return exitOK
	}
	live := newLiveLine(os.Stdout, isTerminal(os.Stdout))
	deadline := time.Now().Add(*timeout)
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		st, _, err := client.Projects().Status(ctx, name, nil)
		cancel()
		switch {
		case api.StatusCode(err) == 404:
			live.Clear()
			c.ui.Output(fmt.Sprintf("Project %q is deleted.", name))
			return exitOK
		case err != nil:
			live.Clear()
			return failed(c.ui, err)
		case st.Deleting == nil:
			live.Clear()
			c.ui.Error(fmt.Sprintf("Project %q exists and is not being deleted: it was deployed again.", name))
			return exitInvalid
		}
		if msg := "==> " + st.Deleting.Message; msg != last {
			last = msg
			if live.live {
				live.Update(msg)
			} else {
				c.ui.Output(msg)
			}
		}
		if time.Now().After(deadline) {
			live.Clear()
			c.ui.Error(fmt.Sprintf("Project %q is still being deleted after %s (%s); the deletion goes on: butter status %s shows it.", name, *timeout, st.Deleting.Message, name))
			return exitInvalid
		}
		time.Sleep(500 * time.Millisecond)
	}
}
