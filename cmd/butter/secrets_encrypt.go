package main

import (
	"context"
	"errors"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/secrets/vaultsetup"

	"github.com/hashicorp/cli"
	vault "github.com/hashicorp/vault/api"

	"github.com/butterfn/butter/secrets"
)

type secretsEncryptCommand struct{ ui cli.Ui }

func (c *secretsEncryptCommand) Synopsis() string {
	return "Encrypt a connector secret with a project's Vault transit key"
}

func (c *secretsEncryptCommand) Help() string {
	return trimHelp(`
Usage: butter secrets encrypt [options] <project> <value | - | @file>

  Encrypts a secret of the project's configuration (a Kafka SASL password)
  with the project's transit key, transit/keys/butter-<project>, which
  ` + "`butter setup vault`" + ` creates, and prints the ciphertext for the spec:

    kafka {
      sasl {
        mechanism          = "SCRAM-SHA-512"
        username           = "iot"
        password_encrypted = "vault:v1:..."
      }
    }

  The spec, the control plane and the Nomad job hold only the ciphertext;
  the pool decrypts it with its own Vault token. A value of - reads
  standard input (not echoed from a terminal); @file reads a file.

Options:
` + secretsVaultHelp)
}

func (c *secretsEncryptCommand) Run(args []string) int {
	fs := newFlagSet("secrets encrypt")
	var k kvTarget
	k.flags(fs)
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 2 {
		err = errors.New("give the project and the value (- reads standard input)")
	}
	if err == nil {
		// kvTarget checks the project, the address and the token; the
		// second argument is the value, not a secret's name.
		_, err = k.args([]string{pos[0], "value"})
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 0)
	}
	v, err := kvPair{key: "the value", raw: pos[1]}.value(c.ui)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	if _, err := k.connect(c.ui); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	cfg := vault.DefaultConfig()
	cfg.Address = k.addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	client.SetToken(k.token)
	ctx, cancel := context.WithTimeout(context.Background(), secretsTimeout)
	defer cancel()
	ct, err := secrets.Encrypt(ctx, client, k.project, v)
	if err != nil {
		c.ui.Error("Error: " + vaultsetup.OpError("encrypt", "transit/encrypt/"+names.TransitKey(k.project), `"update"`, err).Error())
		return exitInvalid
	}
	c.ui.Output(ct)
	return exitOK
}
