package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
)

// RaftServer is one server of the Raft configuration
// (GET /v1/operator/raft/peers answers them sorted by ID).
type RaftServer struct {
	// ID is the server's API address.
	ID string `json:"id"`
	// Address is its Raft address.
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	// Suffrage is "Voter", "Nonvoter" or "Staging".
	Suffrage string `json:"suffrage"`
}

// PeerRemoveResponse answers DELETE /v1/operator/raft/peers/{id}.
type PeerRemoveResponse struct {
	Removed string `json:"removed"`
}

// SnapshotRestoreResponse answers PUT /v1/operator/snapshot.
type SnapshotRestoreResponse struct {
	Restored string `json:"restored"`
}

// Operator runs the cluster: Raft membership and snapshots.
type Operator struct{ c *Client }

// Operator returns the operator endpoints.
func (c *Client) Operator() *Operator { return &Operator{c} }

// RaftPeers lists the servers of the Raft configuration, with the leader
// marked.
func (o *Operator) RaftPeers(ctx context.Context) ([]RaftServer, error) {
	var out []RaftServer
	if err := o.c.write(ctx, http.MethodGet, "/v1/operator/raft/peers", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RaftRemovePeer removes the server with this ID (its API address) from
// the Raft configuration; the leader does it.
func (o *Operator) RaftRemovePeer(ctx context.Context, id string) error {
	return o.c.write(ctx, http.MethodDelete, "/v1/operator/raft/peers/"+seg(id), nil, &PeerRemoveResponse{})
}

// SnapshotSave takes a snapshot on the leader and returns it as a stream,
// with its Raft index. The caller closes the stream.
func (o *Operator) SnapshotSave(ctx context.Context) (io.ReadCloser, uint64, error) {
	resp, err := o.c.send(ctx, request{method: http.MethodGet, path: "/v1/operator/snapshot"})
	if err != nil {
		return nil, 0, err
	}
	index, _ := strconv.ParseUint(resp.Header.Get(HeaderSnapshotIndex), 10, 64)
	return resp.Body, index, nil
}

// SnapshotRestore replaces the whole cluster's state with a snapshot saved
// by SnapshotSave. size is the snapshot's length in bytes (-1: unknown).
func (o *Operator) SnapshotRestore(ctx context.Context, snapshot io.Reader, size int64) error {
	resp, err := o.c.send(ctx, request{method: http.MethodPut, path: "/v1/operator/snapshot", body: snapshot, size: size,
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
