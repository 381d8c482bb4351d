package main

import (
	"fmt"
	"github.com/butterfn/butter/names"
	"path/filepath"
	"strings"

	"github.com/butterfn/butter/scaffold"
	"github.com/hashicorp/cli"
)

type initCommand struct{ ui cli.Ui }

func (c *initCommand) Synopsis() string { return "Create a new project" }

func (c *initCommand) Help() string {
	return trimHelp(`
Usage: butter init [options] [dir]

  Creates a project in dir (default: the current directory): a spec file and
  a hello-world function answering POST /<name>. Existing files are never
  overwritten.

Options:

  -runtime=node
    The function's runtime: ` + strings.Join(scaffold.Runtimes(), ", ") + `.

  -name=<name>
    The project and function name. Defaults to the directory's name.
`)
}

func (c *initCommand) Run(args []string) int {
	fs := newFlagSet("init")
	runtime := fs.String("runtime", "node", "")
	name := fs.String("name", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil {
		known := false
		for _, r := range scaffold.Runtimes() {
			known = known || r == *runtime
		}
		if !known {
			err = fmt.Errorf("-runtime must be one of %s, not %q", strings.Join(scaffold.Runtimes(), ", "), *runtime)
		}
	}
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	if *name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		*name = strings.ToLower(filepath.Base(abs))
	}
	if !names.Valid(*name) {
		return usageError(c.ui, c.Help(), fmt.Errorf("%q is not a valid project name: use lower-case letters, digits, '-' and '_', starting with a letter (set one with -name)", *name), nil, 1)
	}
	files, err := scaffold.Init(dir, *name, *runtime)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	for _, f := range files {
		c.ui.Output("  created " + filepath.Join(dir, f))
	}
	c.ui.Output(fmt.Sprintf("\nProject %q is ready. Next:\n", *name))
	for _, step := range scaffold.NextSteps(dir, *name, "127.0.0.1:8080") {
		c.ui.Output("  " + step)
	}
	return exitOK
}
