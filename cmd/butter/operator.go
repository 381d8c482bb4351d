package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/cli"
)

// EnvAddr names the control plane's API address for the CLI.
const EnvAddr = "BUTTER_ADDR"

func serverAddr(flag string) string {
	if flag != "" {
		return strings.TrimRight(flag, "/")
	}
	if v := os.Getenv(EnvAddr); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "http://127.0.0.1:4750"
}

const addrHelp = `
  -address=<url>
    The control plane's API. Defaults to $BUTTER_ADDR, then
    http://127.0.0.1:4750.`

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

var apiClient = &http.Client{Timeout: 2 * time.Minute}

// callAPI sends a request to the control plane and returns the response
// of a 200, or an error naming the API's complaint. The caller closes the
// body.
func callAPI(method, url string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func apiError(resp *http.Response) error {
	var e struct{ Error string }
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
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
	addr := fs.String("address", "", "")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	resp, err := callAPI("GET", serverAddr(*addr)+"/v1/operator/raft/peers", nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer resp.Body.Close()
	var peers []struct {
		ID, Address, Suffrage string
		Leader                bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&peers); err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
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
	addr := fs.String("address", "", "")
	id := fs.String("peer-id", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *id == "" {
		err = errors.New("-peer-id is required")
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	resp, err := callAPI("DELETE", serverAddr(*addr)+"/v1/operator/raft/peers/"+*id, nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	resp.Body.Close()
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
	addr := fs.String("address", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the file to write")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	resp, err := callAPI("GET", serverAddr(*addr)+"/v1/operator/snapshot", nil, 0)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer resp.Body.Close()
	f, err := os.Create(pos[0])
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	c.ui.Output(fmt.Sprintf("Saved snapshot at index %s to %s (%d bytes)", resp.Header.Get("X-Butter-Snapshot-Index"), pos[0], n))
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
	addr := fs.String("address", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("give the snapshot file")
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	resp, err := callAPI("PUT", serverAddr(*addr)+"/v1/operator/snapshot", f, fi.Size())
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	resp.Body.Close()
	c.ui.Output("Restored " + pos[0])
	return exitOK
}
