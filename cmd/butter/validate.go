package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/hashicorp/cli"
)

type validateCommand struct{ ui cli.Ui }

func (c *validateCommand) Synopsis() string { return "Check a project's spec files" }

func (c *validateCommand) Help() string {
	return trimHelp(`
Usage: butter validate [options] [dir]

  Decodes every *.fn.hcl file under dir (default: the current directory)
  and checks the project: references between blocks, duplicate names and
  routes, cron schedules, stream offsets, durations and sizes, runtimes,
  sources and pipeline cycles. Every problem is reported, with file:line:col
  and how to fix it.

  Exit status: 0 when the project is valid, 1 when it is not, 2 for a
  usage error.

Options:

  -json
    Print the diagnostics as one JSON document, for editors and CI.
` + varHelp)
}

func (c *validateCommand) Run(args []string) int {
	fs := newFlagSet("validate")
	vf := addVarFlags(fs)
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	proj, rep := spec.Load(dir, vf.options()...)
	if *asJSON {
		if err := rep.WriteJSON(os.Stdout); err != nil {
			c.ui.Error(err.Error())
			return exitInvalid
		}
	} else {
		if err := rep.WriteText(os.Stderr); err != nil {
			c.ui.Error(err.Error())
			return exitInvalid
		}
	}
	if proj == nil {
		return exitInvalid
	}
	if !*asJSON {
		c.ui.Output(fmt.Sprintf("The project %q is valid: %s, %s, %s.", proj.Name,
			count(len(proj.Functions), "function"), count(len(proj.Streams), "stream"), count(len(proj.Pipelines), "pipeline")))
		if len(proj.Disabled) > 0 {
			c.ui.Output("Left out by enabled = false: " + strings.Join(proj.Disabled, ", ") + ".")
		}
	}
	return exitOK
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// usageError prints what is wrong with the command line and the help, and
// returns the usage exit code.
func usageError(ui cli.Ui, help string, err error, pos []string, maxPos int) int {
	switch {
	case err != nil:
		ui.Error("Error: " + err.Error())
	case len(pos) > maxPos:
		ui.Error(fmt.Sprintf("Error: too many arguments: %q (expected at most %d)", pos, maxPos))
	}
	ui.Error("\n" + help)
	return exitUsage
}
