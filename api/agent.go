package api

import (
	"context"
	"net/http"
)

// AgentSelf is what a server says about itself (GET /v1/agent/self).
// Servers read it from each other when they bootstrap a cluster.
type AgentSelf struct {
	// ID is the node's Raft ID, which is its API address (host:port).
	ID string `json:"id"`
	// RaftAddr is its Raft TCP address.
	RaftAddr string `json:"raft_addr"`
}

// LeaderResponse answers GET /v1/status/leader.
type LeaderResponse struct {
	// Leader is the leader's ID (its API address), or "" while there is
	// none.
	Leader string `json:"leader"`
}

// Agent reads the answering server's own identity.
type Agent struct{ c *Client }

// Agent returns the agent endpoints.
func (c *Client) Agent() *Agent { return &Agent{c} }

// Self returns the answering server's ID and Raft address.
func (a *Agent) Self(ctx context.Context) (*AgentSelf, error) {
	var out AgentSelf
	if err := a.c.write(ctx, http.MethodGet, "/v1/agent/self", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status reads the cluster's status.
type Status struct{ c *Client }

// Status returns the status endpoints.
func (c *Client) Status() *Status { return &Status{c} }

// Leader returns the leader's ID as the answering server sees it, "" when
// it knows of none.
func (s *Status) Leader(ctx context.Context) (string, error) {
	var out LeaderResponse
	if err := s.c.write(ctx, http.MethodGet, "/v1/status/leader", nil, &out); err != nil {
		return "", err
	}
	return out.Leader, nil
}
