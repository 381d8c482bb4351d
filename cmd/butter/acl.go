package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/butterfn/butter/acl"
	"github.com/butterfn/butter/api"
	"github.com/hashicorp/cli"
)

// The `butter acl` commands, shaped like `nomad acl`: bootstrap, tokens
// and policies (package acl's HCL language; docs/security.md).

type aclCommand struct{}

func (c *aclCommand) Synopsis() string { return "Manage the control plane's ACL tokens and policies" }
func (c *aclCommand) Help() string {
	return trimHelp(`
Usage: butter acl <subcommand>

  The control plane's ACLs, shaped like Nomad's. butter acl bootstrap makes
  the first management token, once per cluster. A management token creates
  policies (HCL files of rules) and client tokens that carry them:

    project "iot" { capabilities = ["deploy", "read", "keys"] }
    project "*"   { capabilities = ["read"] }
    operator      { capabilities = ["snapshot", "raft"] }

  Clients send a token's secret from -token or $BUTTER_TOKEN. The control
  plane keeps only a hash of each secret: it is shown once.
`)
}
func (c *aclCommand) Run(args []string) int { return cli.RunResultHelp }

type aclTokenCommand struct{}

func (c *aclTokenCommand) Synopsis() string { return "Create, list and delete ACL tokens" }
func (c *aclTokenCommand) Help() string {
	return trimHelp(`
Usage: butter acl token <subcommand>

  Every subcommand but self needs a management token.
`)
}
func (c *aclTokenCommand) Run(args []string) int { return cli.RunResultHelp }

type aclPolicyCommand struct{}

func (c *aclPolicyCommand) Synopsis() string { return "Apply, list, show and delete ACL policies" }
func (c *aclPolicyCommand) Help() string {
	return trimHelp(`
Usage: butter acl policy <subcommand>

  Every subcommand needs a management token.
`)
}
func (c *aclPolicyCommand) Run(args []string) int { return cli.RunResultHelp }

// aclArgs parses the API flags and exactly n positional arguments (what
// names them) of an acl command.
func aclArgs(name string, args []string, n int, what string) ([]string, apiFlags, error) {
	fset := newFlagSet(name)
	af := addAPIFlags(fset)
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != n {
		if n == 0 {
			err = fmt.Errorf("too many arguments: %q", pos)
		} else {
			err = errors.New("give " + what)
		}
	}
	return pos, af, err
}

// printToken prints a token's fields, with its secret when it has one.
func printToken(ui cli.Ui, t *api.ACLToken) {
	ui.Output(fmt.Sprintf("Accessor ID  = %s", t.AccessorID))
	if t.SecretID != "" {
		ui.Output(fmt.Sprintf("Secret ID    = %s", t.SecretID))
	}
	ui.Output(fmt.Sprintf("Name         = %s", or(t.Name, "<none>")))
	ui.Output(fmt.Sprintf("Type         = %s", t.Type))
	ui.Output(fmt.Sprintf("Policies     = %s", or(strings.Join(t.Policies, ", "), "<none>")))
	ui.Output(fmt.Sprintf("Create Time  = %s", t.Created.UTC().Format(time.RFC3339)))
	exp := "<none>"
	if !t.Expires.IsZero() {
		exp = t.Expires.UTC().Format(time.RFC3339)
	}
	ui.Output(fmt.Sprintf("Expiry Time  = %s", exp))
}

type aclBootstrapCommand struct{ ui cli.Ui }

func (c *aclBootstrapCommand) Synopsis() string { return "Create the first management token" }
func (c *aclBootstrapCommand) Help() string {
	return trimHelp(`
Usage: butter acl bootstrap [options]

  Creates the cluster's first management token and prints its accessor and
  secret IDs. It works once per cluster; later calls are refused with "ACL
  bootstrap already done". The secret is shown only now: keep it (in Vault,
  or a Nomad variable), and make least-privilege tokens from it.

Options:
` + addrHelp)
}
func (c *aclBootstrapCommand) Run(args []string) int {
	_, af, err := aclArgs("acl bootstrap", args, 0, "")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	tok, err := client.ACL().Bootstrap(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	printToken(c.ui, tok)
	fmt.Fprintln(os.Stderr, "This is the management token: it may do everything. Its secret is shown only now.")
	return exitOK
}

type aclTokenCreateCommand struct{ ui cli.Ui }

func (c *aclTokenCreateCommand) Synopsis() string { return "Create an ACL token" }
func (c *aclTokenCreateCommand) Help() string {
	return trimHelp(`
Usage: butter acl token create [options]

  Creates a token and prints its accessor and secret IDs. The secret is
  shown only now. Needs a management token.

Options:

  -name=<name>
    The token's name, shown by butter acl token list.

  -policy=<name>
    A policy the token carries (repeatable). A client token needs one at
    least.

  -type=client
    client (the capabilities of its policies) or management (everything;
    no policies).

  -ttl=<duration>
    Make the token expire after this long, such as 24h. Default: never.
` + addrHelp)
}
func (c *aclTokenCreateCommand) Run(args []string) int {
	fset := newFlagSet("acl token create")
	af := addAPIFlags(fset)
	name := fset.String("name", "", "")
	typ := fset.String("type", api.ACLClientToken, "")
	ttl := fset.String("ttl", "", "")
	var policies stringList
	fset.Var(&policies, "policy", "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && *ttl != "" {
		if d, perr := time.ParseDuration(*ttl); perr != nil || d <= 0 {
			err = fmt.Errorf("-ttl %q: want a positive duration such as 24h", *ttl)
		}
	}
	if err == nil && *typ != api.ACLClientToken && *typ != api.ACLManagementToken {
		err = fmt.Errorf("-type %q: want client or management", *typ)
	}
	if err == nil && *typ == api.ACLClientToken && len(policies) == 0 {
		err = errors.New("a client token needs at least one -policy (butter acl policy list shows them)")
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	tok, err := client.ACL().TokenCreate(ctx, &api.ACLTokenCreateRequest{Name: *name, Type: *typ, Policies: policies, TTL: *ttl})
	if err != nil {
		return failed(c.ui, err)
	}
	printToken(c.ui, tok)
	return exitOK
}

type aclTokenListCommand struct{ ui cli.Ui }

func (c *aclTokenListCommand) Synopsis() string { return "List ACL tokens" }
func (c *aclTokenListCommand) Help() string {
	return trimHelp(`
Usage: butter acl token list [options]

  Lists the tokens: accessor IDs, names, types, policies and expiry (never
  their secrets, which the control plane does not keep). Needs a
  management token.

Options:
` + addrHelp)
}
func (c *aclTokenListCommand) Run(args []string) int {
	_, af, err := aclArgs("acl token list", args, 0, "")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	toks, err := client.ACL().TokenList(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("%-36s  %-20s %-10s %-20s %s", "Accessor ID", "Name", "Type", "Expires", "Policies"))
	for _, t := range toks {
		exp := "never"
		if !t.Expires.IsZero() {
			exp = t.Expires.UTC().Format(time.RFC3339)
		}
		c.ui.Output(fmt.Sprintf("%-36s  %-20s %-10s %-20s %s", t.AccessorID, or(t.Name, "-"), t.Type, exp, or(strings.Join(t.Policies, ","), "-")))
	}
	return exitOK
}

type aclTokenSelfCommand struct{ ui cli.Ui }

func (c *aclTokenSelfCommand) Synopsis() string { return "Show the ACL token in use" }
func (c *aclTokenSelfCommand) Help() string {
	return trimHelp(`
Usage: butter acl token self [options]

  Shows the token given by -token or $BUTTER_TOKEN (without its secret).

Options:
` + addrHelp)
}
func (c *aclTokenSelfCommand) Run(args []string) int {
	_, af, err := aclArgs("acl token self", args, 0, "")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	tok, err := client.ACL().TokenSelf(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	printToken(c.ui, tok)
	return exitOK
}

type aclTokenDeleteCommand struct{ ui cli.Ui }

func (c *aclTokenDeleteCommand) Synopsis() string { return "Delete an ACL token" }
func (c *aclTokenDeleteCommand) Help() string {
	return trimHelp(`
Usage: butter acl token delete [options] <accessor-id>

  Deletes the token with this accessor ID (butter acl token list shows
  them). It is refused from then on. Needs a management token.

Options:
` + addrHelp)
}
func (c *aclTokenDeleteCommand) Run(args []string) int {
	pos, af, err := aclArgs("acl token delete", args, 1, "the token's accessor ID")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := client.ACL().TokenDelete(ctx, pos[0]); err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Deleted token " + pos[0])
	return exitOK
}

type aclPolicyApplyCommand struct{ ui cli.Ui }

func (c *aclPolicyApplyCommand) Synopsis() string { return "Create or replace an ACL policy" }
func (c *aclPolicyApplyCommand) Help() string {
	return trimHelp(`
Usage: butter acl policy apply [options] <name> <file>

  Creates or replaces the policy name with the rules of file (HCL; "-"
  reads standard input):

    project "iot" { capabilities = ["deploy", "read", "keys"] }
    project "*"   { capabilities = ["read"] }      # glob on the name
    operator      { capabilities = ["snapshot", "raft"] }

  Project capabilities: deploy, read, keys. Operator capabilities:
  snapshot, raft. The file is checked here first: an error names
  file:line:col. Tokens that carry the policy get the new rules at once.
  Needs a management token.

Options:

  -description=<text>
    The policy's description.
` + addrHelp)
}
func (c *aclPolicyApplyCommand) Run(args []string) int {
	fset := newFlagSet("acl policy apply")
	af := addAPIFlags(fset)
	desc := fset.String("description", "", "")
	pos, err := parseInterspersed(fset, args)
	if err == nil && len(pos) != 2 {
		err = errors.New("give the policy's name and its file")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}
	name, file := pos[0], pos[1]
	var src []byte
	if file == "-" {
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return failed(c.ui, fmt.Errorf("read policy file: %w", err))
	}
	if _, err := acl.Parse(file, src); err != nil {
		return failed(c.ui, fmt.Errorf("policy %s is not applied: %w", name, err))
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := client.ACL().PolicyApply(ctx, name, *desc, string(src)); err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("Applied policy %q from %s", name, file))
	return exitOK
}

type aclPolicyListCommand struct{ ui cli.Ui }

func (c *aclPolicyListCommand) Synopsis() string { return "List ACL policies" }
func (c *aclPolicyListCommand) Help() string {
	return trimHelp(`
Usage: butter acl policy list [options]

  Lists the policies with their descriptions. Needs a management token.

Options:
` + addrHelp)
}
func (c *aclPolicyListCommand) Run(args []string) int {
	_, af, err := aclArgs("acl policy list", args, 0, "")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	pols, err := client.ACL().PolicyList(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("%-24s %s", "Name", "Description"))
	for _, p := range pols {
		c.ui.Output(fmt.Sprintf("%-24s %s", p.Name, or(p.Description, "-")))
	}
	return exitOK
}

type aclPolicyInfoCommand struct{ ui cli.Ui }

func (c *aclPolicyInfoCommand) Synopsis() string { return "Show an ACL policy's rules" }
func (c *aclPolicyInfoCommand) Help() string {
	return trimHelp(`
Usage: butter acl policy info [options] <name>

  Shows the policy's description and rules. Needs a management token.

Options:
` + addrHelp)
}
func (c *aclPolicyInfoCommand) Run(args []string) int {
	pos, af, err := aclArgs("acl policy info", args, 1, "the policy's name")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	p, err := client.ACL().PolicyGet(ctx, pos[0])
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Name        = " + p.Name)
	c.ui.Output("Description = " + or(p.Description, "<none>"))
	c.ui.Output("Modified    = " + p.Modified.UTC().Format(time.RFC3339))
	c.ui.Output("Rules:\n\n" + strings.TrimRight(p.Rules, "\n"))
	return exitOK
}

type aclPolicyDeleteCommand struct{ ui cli.Ui }

func (c *aclPolicyDeleteCommand) Synopsis() string { return "Delete an ACL policy" }
func (c *aclPolicyDeleteCommand) Help() string {
	return trimHelp(`
Usage: butter acl policy delete [options] <name>

  Deletes the policy. Tokens that carry it keep their other policies.
  Needs a management token.

Options:
` + addrHelp)
}
func (c *aclPolicyDeleteCommand) Run(args []string) int {
	pos, af, err := aclArgs("acl policy delete", args, 1, "the policy's name")
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := client.ACL().PolicyDelete(ctx, pos[0]); err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Deleted policy " + pos[0])
	return exitOK
}
