package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/hashicorp/cli"
)

// apiFlags are the flags of every command that calls the control plane.
type apiFlags struct {
	address, token *string
	// The TLS flags, over $BUTTER_CACERT and the others.
	caCert, clientCert, clientKey, serverName *string
}

// addAPIFlags adds -address, -token and the TLS flags to fs.
func addAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		address: fs.String("address", "", ""), token: fs.String("token", "", ""),
		caCert: fs.String("ca-cert", "", ""), clientCert: fs.String("client-cert", "", ""),
		clientKey: fs.String("client-key", "", ""), serverName: fs.String("tls-server-name", "", ""),
	}
}

// client returns a control-plane client: api.DefaultConfig() (from
// $BUTTER_ADDR, $BUTTER_TOKEN and the TLS variables) with the flags
// that were given over it.
func (f apiFlags) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	if *f.address != "" {
		cfg.Address = *f.address
	}
	if *f.token != "" {
		cfg.Token = *f.token
	}
	for _, kv := range []struct{ flag, into *string }{
		{f.caCert, &cfg.TLS.CACert}, {f.clientCert, &cfg.TLS.ClientCert},
		{f.clientKey, &cfg.TLS.ClientKey}, {f.serverName, &cfg.TLS.ServerName},
	} {
		if *kv.flag != "" {
			*kv.into = *kv.flag
		}
	}
	return api.NewClient(cfg)
}

// callTimeout bounds one command's calls to the control plane.
const callTimeout = 2 * time.Minute

const addrHelp = `
  -address=<url>
    The control plane's API. Defaults to $BUTTER_ADDR, then
    http://127.0.0.1:4750 (https:// when a CA certificate is given and
    the address has no scheme).

  -ca-cert=<file>
    The CA to verify the control plane's certificate with. Defaults to
    $BUTTER_CACERT.

  -client-cert=<file>, -client-key=<file>
    The client certificate and key for mutual TLS (butter tls cert create
    -client). Default: $BUTTER_CLIENT_CERT and $BUTTER_CLIENT_KEY.

  -tls-server-name=<name>
    The name to verify in the server's certificate, such as
    server.global.butter when the address is not in it. Defaults to
    $BUTTER_TLS_SERVER_NAME. ($BUTTER_SKIP_VERIFY=true skips verifying.)

  -token=<token>
    The ACL token sent to the control plane. Defaults to $BUTTER_TOKEN.`

type operatorCommand struct{}

func (c *operatorCommand) Synopsis() string { return "Operate the control plane" }
func (c *operatorCommand) Help() string {
	return trimHelp(`
Usage: butter operator <subcommand> [options]

Subcommands:
    raft list-peers     List the Raft servers
    raft remove-peer    Remove a server from the cluster
    snapshot save       Save the cluster's state to a file
    snapshot restore    Replace the cluster's state with a saved one
`)
}
func (c *operatorCommand) Run(args []string) int {
	fmt.Fprintln(os.Stderr, c.Help())
	return exitUsage
}

type listPeersCommand struct{ ui cli.Ui }

func (c *listPeersCommand) Synopsis() string { return "List the Raft servers" }
func (c *listPeersCommand) Help() string {
	return trimHelp(`
Usage: butter operator raft list-peers [options]

  Lists the servers of the Raft configuration and which one leads.

Options:
` + addrHelp)
}
func (c *listPeersCommand) Run(args []string) int {
	fs := newFlagSet("list-peers")
	af := addAPIFlags(fs)
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	peers, err := client.Operator().RaftPeers(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("%-24s %-24s %-8s %s", "ID", "Address", "State", "Voter"))
	for _, p := range peers {
		state := "follower"
		if p.Leader {
			state = "leader"
		}
		c.ui.Output(fmt.Sprintf("%-24s %-24s %-8s %v", p.ID, p.Address, state, p.Suffrage == "Voter"))
	}
	return exitOK
}

// failed reports err and returns the exit code of a failed command.
func failed(ui cli.Ui, err error) int {
	ui.Error("Error: " + err.Error())
	return exitInvalid
}

type removePeerCommand struct{ ui cli.Ui }

func (c *removePeerCommand) Synopsis() string { return "Remove a server from the cluster" }
func (c *removePeerCommand) Help() string {
	return trimHelp(`
Usage: butter operator raft remove-peer -peer-id=<id> [options]

  Removes a server (by its ID, its API address) from the Raft configuration,
  for a server that is gone for good.

Options:

  -peer-id=<id>
    The server to remove.
` + addrHelp)
}
func (c *removePeerCommand) Run(args []string) int {
	fs := newFlagSet("remove-peer")
	af := addAPIFlags(fs)
	id := fs.String("peer-id", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *id == "" {
		err = errors.New("-peer-id is required")
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
	if err := client.Operator().RaftRemovePeer(ctx, *id); err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Removed peer " + *id)
	return exitOK
}

type snapshotSaveCommand struct{ ui cli.Ui }

func (c *snapshotSaveCommand) Synopsis() string { return "Save the cluster's state to a file" }
func (c *snapshotSaveCommand) Help() string {
	return trimHelp(`
Usage: butter operator snapshot save [options] <file>

  Takes a snapshot on the leader and writes it to file. Snapshots hold the
  control plane's state only: no blobs and no secret values.

Options:
` + addrHelp)
}
func (c *snapshotSaveCommand) Run(args []string) int {
	fs := newFlagSet("snapshot save")
	af := addAPIFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the file to write")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	snap, index, err := client.Operator().SnapshotSave(ctx)
	if err != nil {
		return failed(c.ui, err)
	}
	defer snap.Close()
	f, err := os.Create(pos[0])
	if err != nil {
		return failed(c.ui, err)
	}
	live := newLiveLine(os.Stderr, isTerminal(os.Stderr))
	n, err := io.Copy(f, live.reader(snap, "saving the snapshot", 0))
	live.Clear()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("Saved snapshot at index %d to %s (%d bytes)", index, pos[0], n))
	return exitOK
}

type snapshotRestoreCommand struct{ ui cli.Ui }

func (c *snapshotRestoreCommand) Synopsis() string {
	return "Replace the cluster's state with a saved one"
}
func (c *snapshotRestoreCommand) Help() string {
	return trimHelp(`
Usage: butter operator snapshot restore [options] <file>

  Replaces the whole cluster's state with a snapshot saved by
  "butter operator snapshot save".

Options:
` + addrHelp)
}
func (c *snapshotRestoreCommand) Run(args []string) int {
	fs := newFlagSet("snapshot restore")
	af := addAPIFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the snapshot file")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	client, err := af.client()
	if err != nil {
		return failed(c.ui, err)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return failed(c.ui, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return failed(c.ui, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	live := newLiveLine(os.Stderr, isTerminal(os.Stderr))
	err = client.Operator().SnapshotRestore(ctx, live.reader(f, "uploading the snapshot", fi.Size()), fi.Size())
	live.Clear()
	if err != nil {
		return failed(c.ui, err)
	}
	c.ui.Output("Restored " + pos[0])
	return exitOK
}
