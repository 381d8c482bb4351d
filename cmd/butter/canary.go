package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/hashicorp/cli"
)

// canaryFlags are butter deploy's canary options.
type canaryFlags struct {
	canary, maxErrors *string
	interval          *time.Duration
	maxLatency        *float64
	minRequests       *int
}

func addCanaryFlags(fset *flag.FlagSet) canaryFlags {
	return canaryFlags{
		canary:      fset.String("canary", "", ""),
		interval:    fset.Duration("canary-interval", api.DefaultCanaryInterval, ""),
		maxErrors:   fset.String("canary-max-error-rate", "1%", ""),
		maxLatency:  fset.Float64("canary-max-latency-ratio", api.DefaultCanaryMaxLatencyRatio, ""),
		minRequests: fset.Int("canary-min-requests", api.DefaultCanaryMinRequests, ""),
	}
}

const canaryHelp = `
  -canary=10%
    Keep the serving revision and send this share of the calls to the new
    one, on allocations Nomad places beside the serving ones (a canary
    deployment). A single share (0% to 99%; 0% sends only the calls with
    the header Butter-Revision: canary) is a manual canary: it stays until
    butter canary promote or butter canary abort. A list such as
    10%,50%,100% (or "auto", the same) is an automated canary: each step
    lasts -canary-interval, then the new revision's calls are compared with
    an equal share of the serving revision's; within the budgets the next
    step starts, and after the last the new revision is promoted; over a
    budget the canary is aborted and the serving revision stays. The
    command follows the canary: a manual one until its share takes effect,
    an automated one to its end (exit 1 when aborted). The new revision
    must have the same routes and pools as the serving one.

  -canary-interval=1m
    How long each step of an automated canary lasts.

  -canary-max-error-rate=1%
    How many percentage points the new revision's error rate (answers
    with a 5xx status) may exceed the baseline's.

  -canary-max-latency-ratio=1.5
    How many times the baseline's p99 latency the new revision's may be
    (differences under 5ms are never counted).

  -canary-min-requests=20
    How many calls each cohort needs before a step is judged.
`

// request turns the flags into a canary request; nil without -canary.
func (f canaryFlags) request() (*api.CanaryRequest, error) {
	if *f.canary == "" {
		return nil, nil
	}
	req := &api.CanaryRequest{Interval: api.Duration(*f.interval), MaxLatencyRatio: *f.maxLatency, MinRequests: *f.minRequests}
	rate, err := percent(*f.maxErrors)
	if err != nil {
		return nil, fmt.Errorf("-canary-max-error-rate: %w", err)
	}
	req.MaxErrorRate = float64(rate) / 100
	if req.MaxErrorRate == 0 {
		req.MaxErrorRate = 1e-9 // "0%": no error more than the baseline's
	}
	v := *f.canary
	if v == "auto" {
		v = "10%,50%,100%"
	}
	parts := strings.Split(v, ",")
	if len(parts) == 1 {
		if req.Weight, err = percent(parts[0]); err != nil {
			return nil, fmt.Errorf("-canary: %w", err)
		}
		return req, nil
	}
	for _, p := range parts {
		n, err := percent(p)
		if err != nil {
			return nil, fmt.Errorf("-canary: %w", err)
		}
		req.Steps = append(req.Steps, n)
	}
	return req, nil
}

// percent reads "10%" or "10" as 10.
func percent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%q is not a percentage such as 10%%", s)
	}
	return n, nil
}

// watchCanary follows a canary: a manual one until its share takes
// effect, an automated one until it ends. It prints each change of
// phase, message and step.
func watchCanary(ui cli.Ui, client *api.Client, project, revision string, automated bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last, steps := "", 0
	for {
		st, _, err := client.Projects().Status(ctx, project, nil)
		if err != nil {
			return err
		}
		c := st.Canary
		if c == nil || c.Revision != revision {
			return fmt.Errorf("project %q has no canary of revision %s", project, revision)
		}
		for ; steps < len(c.History); steps++ {
			ui.Output("    " + stepLine(c.History[steps]))
		}
		if line := fmt.Sprintf("==> canary %s: %s", c.Phase, c.Message); line != last {
			ui.Output(line)
			last = line
		}
		switch {
		case c.Phase == api.CanaryPromoted:
			ui.Output(fmt.Sprintf("Revision %s of project %q is promoted and serves every call.", revision, project))
			return nil
		case !c.Ended.IsZero():
			ui.Error(fmt.Sprintf("The canary of revision %s ended %s: %s. Revision %s serves project %q.", revision, c.Phase, c.Message, c.Stable, project))
			return errDeployFailed
		case !automated && c.Effective:
			ui.Output(fmt.Sprintf("The canary runs: %d%% of the calls go to revision %s (or send %s: canary). Move it on with butter canary promote %s, or end it with butter canary abort %s.", c.Weight, revision, api.HeaderRevision, project, project))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following after %s; the canary goes on (%s): %w", timeout, c.Phase, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func stepLine(s api.CanaryStep) string {
	return fmt.Sprintf("step %d%%: %s: canary %d calls, %.2f%% errors, p99 %s; baseline %d calls, %.2f%% errors, p99 %s — %s",
		s.Weight, s.Verdict, int(s.Canary.Requests), rate(s.Canary), dur(s.Canary.P99),
		int(s.Baseline.Requests), rate(s.Baseline), dur(s.Baseline.P99), s.Reason)
}

func rate(s api.CohortSample) float64 {
	if s.Requests == 0 {
		return 0
	}
	return 100 * s.Errors / s.Requests
}

func dur(secs float64) string {
	return time.Duration(secs * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// canaryLines are what butter status shows of a canary.
func canaryLines(c *api.Canary) []string {
	kind := "manual"
	if len(c.Steps) > 0 {
		kind = fmt.Sprintf("automated, steps %s every %s", joinPercents(c.Steps), time.Duration(c.Interval))
	}
	state := "in progress"
	if !c.Ended.IsZero() {
		state = "ended " + c.Ended.Format(time.RFC3339)
	}
	out := []string{
		fmt.Sprintf("Canary     revision %s beside stable %s (%s; %s)", c.Revision, c.Stable, kind, state),
		fmt.Sprintf("           %s, %d%% of calls: %s", c.Phase, c.Weight, c.Message),
	}
	if s := c.Current; s != nil {
		out = append(out, "           now: "+stepLine(*s))
	}
	for _, s := range c.History {
		out = append(out, "           "+stepLine(s))
	}
	return out
}

func joinPercents(ws []int) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, strconv.Itoa(w)+"%")
	}
	return strings.Join(parts, ",")
}

type canaryCommand struct{}

func (c *canaryCommand) Synopsis() string { return "Move a project's canary on: promote, abort" }
func (c *canaryCommand) Help() string {
	return trimHelp(`
Usage: butter canary <subcommand>

  A canary is a revision deployed beside the serving one with
  butter deploy -canary; butter status shows it.

Subcommands:

  promote     Send the canary the next share of calls, or promote it
  abort       End the canary: the serving revision stays
`)
}
func (c *canaryCommand) Run(args []string) int { return cli.RunResultHelp }

type canaryMoveCommand struct {
	ui      cli.Ui
	promote bool
}

func (c *canaryMoveCommand) Synopsis() string {
	if c.promote {
		return "Send a canary the next share of calls, or promote it"
	}
	return "End a canary: the serving revision stays"
}

func (c *canaryMoveCommand) Help() string {
	if c.promote {
		return trimHelp(`
Usage: butter canary promote [options] <project>

  Moves the project's canary to the next step of its steps (an automated
  canary) or to 100% (a manual one), or to -weight. At 100% the canary is
  promoted: Nomad replaces the serving revision's allocations with the
  new revision's, and the command follows until it is healthy.

Options:

  -weight=0
    The share of calls, 1 to 100; 0 is the next step.
` + addrHelp)
	}
	return trimHelp(`
Usage: butter canary abort [options] <project>

  Ends the project's canary: Nomad's deployment is failed, the canary's
  allocations stop, and the serving revision is activated again. The
  command follows until it is healthy.

Options:

  -reason=""
    Why, recorded with the canary.
` + addrHelp)
}

func (c *canaryMoveCommand) Run(args []string) int {
	fset := newFlagSet("canary")
	af := addAPIFlags(fset)
	weight := fset.Int("weight", 0, "")
	reason := fset.String("reason", "", "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	project := pos[0]
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var out *api.Canary
	if c.promote {
		out, err = client.Canaries().Promote(ctx, project, *weight)
	} else {
		out, err = client.Canaries().Abort(ctx, project, *reason)
	}
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("Canary of revision %s: %s, %d%% of calls: %s", out.Revision, out.Phase, out.Weight, out.Message))
	switch {
	case out.Phase == api.CanaryPromote:
		return follow(c.ui, client, project, out.Revision, true, isTerminal(os.Stdout), 10*time.Minute)
	case out.Phase == api.CanaryAbort:
		if err := waitActive(client, project, out.Stable, time.Minute); err != nil {
			return failed(c.ui, err)
		}
		return follow(c.ui, client, project, out.Stable, true, isTerminal(os.Stdout), 10*time.Minute)
	}
	return exitOK
}

// waitActive waits until revision is the project's active revision.
func waitActive(client *api.Client, project, revision string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		st, _, err := client.Projects().Status(ctx, project, nil)
		if err != nil {
			return err
		}
		if st.Active != nil && st.Active.ID == revision {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("revision %s did not become project %q's active revision within %s", revision, project, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
