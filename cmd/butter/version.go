package main

import "github.com/hashicorp/cli"

type versionCommand struct{ ui cli.Ui }

func (c *versionCommand) Synopsis() string { return "Print the Butter version" }

func (c *versionCommand) Help() string {
	return trimHelp(`
Usage: butter version

  Prints the version of this butter binary and the commit it was built from.
`)
}

func (c *versionCommand) Run(args []string) int {
	if len(args) > 0 {
		return usageError(c.ui, c.Help(), nil, args, 0)
	}
	c.ui.Output(versionString())
	return exitOK
}
