// Command butter is Butter's CLI: it validates specs, renders Nomad jobs,
// scaffolds projects, runs the server, the gateway, the pool and the dev
// environment, and drives the control plane. Commands are thin: they
// parse flags and hand the work to the packages that own it (the control
// plane through package api's client, `butter deploy` through package
// deploy, `butter dev` through package dev).
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/cli"

	"github.com/butterfn/butter/sandbox"
)

// Exit codes, shared by every command.
const (
	exitOK      = 0
	exitInvalid = 1 // the spec is invalid, or the command failed
	exitUsage   = 2 // the command line is wrong
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// commit is set at build time with -ldflags "-X main.commit=...".
var commit = ""

func main() {
	// The pool starts instances of functions with secrets through this
	// binary (package sandbox); it is not a command users run.
	if len(os.Args) > 1 && os.Args[1] == sandbox.Command {
		os.Exit(sandbox.Main(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ui := &cli.BasicUi{Reader: os.Stdin, Writer: os.Stdout, ErrorWriter: os.Stderr}
	c := cli.NewCLI("butter", versionString())
	c.Args = args
	c.HelpWriter = os.Stdout
	c.ErrorWriter = os.Stderr
	c.Commands = map[string]cli.CommandFactory{
		"acl":                       func() (cli.Command, error) { return &aclCommand{}, nil },
		"acl bootstrap":             func() (cli.Command, error) { return &aclBootstrapCommand{ui: ui}, nil },
		"acl token":                 func() (cli.Command, error) { return &aclTokenCommand{}, nil },
		"acl token create":          func() (cli.Command, error) { return &aclTokenCreateCommand{ui: ui}, nil },
		"acl token list":            func() (cli.Command, error) { return &aclTokenListCommand{ui: ui}, nil },
		"acl token self":            func() (cli.Command, error) { return &aclTokenSelfCommand{ui: ui}, nil },
		"acl token delete":          func() (cli.Command, error) { return &aclTokenDeleteCommand{ui: ui}, nil },
		"acl policy":                func() (cli.Command, error) { return &aclPolicyCommand{}, nil },
		"acl policy apply":          func() (cli.Command, error) { return &aclPolicyApplyCommand{ui: ui}, nil },
		"acl policy list":           func() (cli.Command, error) { return &aclPolicyListCommand{ui: ui}, nil },
		"acl policy info":           func() (cli.Command, error) { return &aclPolicyInfoCommand{ui: ui}, nil },
		"acl policy delete":         func() (cli.Command, error) { return &aclPolicyDeleteCommand{ui: ui}, nil },
		"validate":                  func() (cli.Command, error) { return &validateCommand{ui: ui}, nil },
		"job":                       func() (cli.Command, error) { return &jobCommand{}, nil },
		"job render":                func() (cli.Command, error) { return &renderCommand{ui: ui}, nil },
		"init":                      func() (cli.Command, error) { return &initCommand{ui: ui}, nil },
		"version":                   func() (cli.Command, error) { return &versionCommand{ui: ui}, nil },
		"invoke":                    func() (cli.Command, error) { return &invokeCommand{ui: ui}, nil },
		"emit":                      func() (cli.Command, error) { return &emitCommand{ui: ui}, nil },
		"tail":                      func() (cli.Command, error) { return &tailCommand{ui: ui}, nil },
		"logs":                      func() (cli.Command, error) { return &logsCommand{ui: ui}, nil },
		"executions":                func() (cli.Command, error) { return &executionsCommand{ui: ui}, nil },
		"keys":                      func() (cli.Command, error) { return &keysCommand{}, nil },
		"project":                   func() (cli.Command, error) { return &projectCommand{}, nil },
		"project quota":             func() (cli.Command, error) { return &projectQuotaCommand{}, nil },
		"project delete":            func() (cli.Command, error) { return &projectDeleteCommand{ui: ui}, nil },
		"project quota get":         func() (cli.Command, error) { return &projectQuotaGetCommand{ui: ui}, nil },
		"project quota set":         func() (cli.Command, error) { return &projectQuotaSetCommand{ui: ui}, nil },
		"keys create":               func() (cli.Command, error) { return &keysCreateCommand{ui: ui}, nil },
		"keys list":                 func() (cli.Command, error) { return &keysListCommand{ui: ui}, nil },
		"keys revoke":               func() (cli.Command, error) { return &keysRevokeCommand{ui: ui}, nil },
		"pool":                      func() (cli.Command, error) { return &poolCommand{ui: ui}, nil },
		"broker":                    func() (cli.Command, error) { return &brokerCommand{ui: ui}, nil },
		"server":                    func() (cli.Command, error) { return &serverCommand{ui: ui}, nil },
		"operator":                  func() (cli.Command, error) { return &operatorCommand{}, nil },
		"deploy":                    func() (cli.Command, error) { return &deployCommand{ui: ui}, nil },
		"gateway":                   func() (cli.Command, error) { return &gatewayCommand{ui: ui}, nil },
		"dev":                       func() (cli.Command, error) { return &devCommand{ui: ui}, nil },
		"revisions":                 func() (cli.Command, error) { return &revisionsCommand{ui: ui}, nil },
		"rollback":                  func() (cli.Command, error) { return &rollbackCommand{ui: ui}, nil },
		"canary":                    func() (cli.Command, error) { return &canaryCommand{}, nil },
		"canary promote":            func() (cli.Command, error) { return &canaryMoveCommand{ui: ui, promote: true}, nil },
		"canary abort":              func() (cli.Command, error) { return &canaryMoveCommand{ui: ui}, nil },
		"status":                    func() (cli.Command, error) { return &statusCommand{ui: ui}, nil },
		"operator raft list-peers":  func() (cli.Command, error) { return &listPeersCommand{ui: ui}, nil },
		"operator raft remove-peer": func() (cli.Command, error) { return &removePeerCommand{ui: ui}, nil },
		"operator snapshot save":    func() (cli.Command, error) { return &snapshotSaveCommand{ui: ui}, nil },
		"operator snapshot restore": func() (cli.Command, error) { return &snapshotRestoreCommand{ui: ui}, nil },
		"setup vault":               func() (cli.Command, error) { return &setupVaultCommand{ui: ui}, nil },
		"secrets":                   func() (cli.Command, error) { return &secretsCommand{}, nil },
		"secrets encrypt":           func() (cli.Command, error) { return &secretsEncryptCommand{ui: ui}, nil },
		"secrets put":               func() (cli.Command, error) { return &secretsPutCommand{ui: ui}, nil },
		"secrets get":               func() (cli.Command, error) { return &secretsGetCommand{ui: ui}, nil },
		"tls":                       func() (cli.Command, error) { return &tlsCommand{}, nil },
		"tls ca": func() (cli.Command, error) {
			return &tlsGroupCommand{synopsis: "Create a certificate authority", usage: "butter tls ca create [options]"}, nil
		},
		"tls cert": func() (cli.Command, error) {
			return &tlsGroupCommand{synopsis: "Create server and client certificates signed by the CA", usage: "butter tls cert create -server|-client [options]"}, nil
		},
		"tls ca create":   func() (cli.Command, error) { return &tlsCACreateCommand{ui: ui}, nil },
		"tls cert create": func() (cli.Command, error) { return &tlsCertCreateCommand{ui: ui}, nil },
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return exitInvalid
	}
	if code == 127 { // hashicorp/cli: unknown command
		return exitUsage
	}
	return code
}

func versionString() string {
	if commit != "" {
		return fmt.Sprintf("Butter v%s (%s)", version, commit)
	}
	return "Butter v" + version
}
