package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/cli"
)

type keysCommand struct{}

func (c *keysCommand) Synopsis() string { return "Create, list and revoke API keys" }
func (c *keysCommand) Help() string {
	return trimHelp(`
Usage: butter keys <subcommand>

  API keys let callers through the gateway's api_key routes. The control
  plane keeps only each key's SHA-256 hash; a key is shown once, when it is
  created.
`)
}
func (c *keysCommand) Run(args []string) int { return cli.RunResultHelp }

type keysCreateCommand struct{ ui cli.Ui }

func (c *keysCreateCommand) Synopsis() string { return "Create an API key for a project" }
func (c *keysCreateCommand) Help() string {
	return trimHelp(`
Usage: butter keys create [options] <project>

  Creates an API key of the project and prints it. Only its hash is stored:
  keep the key, it cannot be shown again.

Options:

  -route="POST /path"
    Limit the key to these routes (repeat through a comma-separated list).
    Default: every route of the project.
` + addrHelp)
}
func (c *keysCreateCommand) Run(args []string) int {
	fset := newFlagSet("keys create")
	af := addAPIFlags(fset)
	routeList := fset.String("route", "", "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the project's name")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	var routes []string
	for _, r := range strings.Split(*routeList, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := client.Keys().Create(ctx, pos[0], routes)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(out.Key)
	// The key alone goes to standard output, so KEY=$(butter keys create p) works.
	fmt.Fprintf(os.Stderr, "Created an API key of project %q (hash %s). It is shown only now.\n", pos[0], out.Hash)
	return exitOK
}

type keysListCommand struct{ ui cli.Ui }

func (c *keysListCommand) Synopsis() string { return "List API keys" }
func (c *keysListCommand) Help() string {
	return trimHelp(`
Usage: butter keys list [options]

  Lists the API keys' hashes, projects and routes.

Options:
` + addrHelp)
}
func (c *keysListCommand) Run(args []string) int {
	fset := newFlagSet("keys list")
	af := addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	keys, _, err := client.Keys().List(ctx, nil)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("%-64s  %-20s %s", "Hash", "Project", "Routes"))
	for _, k := range keys {
		c.ui.Output(fmt.Sprintf("%-64s  %-20s %s", k.Hash, k.Project, or(strings.Join(k.Routes, ", "), "all")))
	}
	return exitOK
}

type keysRevokeCommand struct{ ui cli.Ui }

func (c *keysRevokeCommand) Synopsis() string { return "Revoke an API key" }
func (c *keysRevokeCommand) Help() string {
	return trimHelp(`
Usage: butter keys revoke [options] <hash>

  Revokes the API key with this hash (butter keys list shows them). Gateways
  stop accepting it at their next refresh.

Options:
` + addrHelp)
}
func (c *keysRevokeCommand) Run(args []string) int {
	hash, af, err := projectArgs("keys revoke", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := client.Keys().Revoke(ctx, hash); err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Revoked " + hash)
	return exitOK
}
