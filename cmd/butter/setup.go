package main

import (
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/secrets/vaultsetup"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/cli"
	vault "github.com/hashicorp/vault/api"
)

type setupVaultCommand struct{ ui cli.Ui }

func (c *setupVaultCommand) Synopsis() string {
	return "Configure Vault for the workload identities of Butter's Nomad jobs"
}

func (c *setupVaultCommand) Help() string {
	return trimHelp(`
Usage: butter setup vault [options]

  Configures Vault so that Butter's Nomad jobs log in with their workload
  identity, as ` + "`nomad setup vault`" + ` does, with one role and one policy per
  project. It creates what is missing and leaves what is right alone, so it
  is safe to run again (every item then reports "unchanged"):

    - the JWT auth method at jwt-nomad/, trusting Nomad's JWKS
      (jwks_url = <nomad addr>/.well-known/jwks.json, default_role =
      butter-default);
    - a KV version 2 secrets engine at secret/ and transit at transit/;
    - for each project P: the policy butter-P (read on
      secret/data/butter/P/*, encrypt and decrypt with the transit key
      butter-P), the transit key butter-P, and the JWT role butter-P, bound
      to the Nomad job butter-P.

  A project's job then asks for its token with vault { role = "butter-P" }.
  Vault must reach Nomad's address to fetch the JWKS. See docs/vault.md for
  the Nomad agent's vault block and the token policy this command needs.

Options:

  -vault-addr=<url>
    Vault's address. Default: $VAULT_ADDR.

  -token=<token>
    A Vault token allowed to configure auth methods, mounts, policies and
    transit keys (docs/vault.md lists the policy). Default: $VAULT_TOKEN.

  -nomad-addr=<url>
    Nomad's HTTP address, as Vault reaches it. Default: $NOMAD_ADDR, or
    http://127.0.0.1:4646.

  -project=<name>
    A project to give a role, a policy and a transit key. Repeat the flag
    or give a comma-separated list.
`)
}

// commaList is a flag that may be repeated and takes comma-separated
// lists; it drops duplicates.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }
func (l *commaList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(*l, s) {
			*l = append(*l, s)
		}
	}
	return nil
}

func (c *setupVaultCommand) Run(args []string) int {
	fs := newFlagSet("setup vault")
	addr := fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "")
	token := fs.String("token", os.Getenv("VAULT_TOKEN"), "")
	nomadAddr := fs.String("nomad-addr", os.Getenv("NOMAD_ADDR"), "")
	var projects commaList
	fs.Var(&projects, "project", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected arguments %q: name projects with -project", pos)
	}
	if err == nil {
		for _, p := range projects {
			if !names.Valid(p) {
				err = fmt.Errorf("-project %q is not a project name: lower-case letters, digits, '-' and '_', starting with a letter", p)
				break
			}
		}
	}
	if err == nil && *addr == "" {
		err = errors.New("no Vault address: set -vault-addr or VAULT_ADDR")
	}
	if err == nil && *token == "" {
		err = errors.New("no Vault token: set -token or VAULT_TOKEN")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	if *nomadAddr == "" {
		*nomadAddr = "http://127.0.0.1:4646"
	}

	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		c.ui.Error("Error: Vault client configuration: " + cfg.Error.Error())
		return exitInvalid
	}
	cfg.Address = *addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		c.ui.Error("Error: Vault client: " + err.Error())
		return exitInvalid
	}
	client.SetToken(*token)

	s := vaultsetup.New(client, *addr, strings.TrimRight(*nomadAddr, "/")+"/.well-known/jwks.json", newUIWriter(c.ui))
	if err := s.Run(projects); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	return exitOK
}
