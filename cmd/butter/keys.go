package main

import (
	"bytes"
	"encoding/json"
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
	addr := fset.String("address", "", "")
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
	body, _ := json.Marshal(map[string]any{"routes": routes})
	resp, err := callAPI("POST", serverAddr(*addr)+"/v1/projects/"+pos[0]+"/keys", bytes.NewReader(body), int64(len(body)))
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer resp.Body.Close()
	var out struct{ Key, Hash string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
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
	addr := fset.String("address", "", "")
	pos, err := parseInterspersed(fset, args)
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	var keys []struct {
		Hash, Project string
		Routes        []string
	}
	if err := getJSON(serverAddr(*addr)+"/v1/keys", &keys); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
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
	hash, addr, err := projectArgs("keys revoke", args)
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	resp, err := callAPI("DELETE", serverAddr(addr)+"/v1/keys/"+hash, nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	resp.Body.Close()
	c.ui.Output("Revoked " + hash)
	return exitOK
}
