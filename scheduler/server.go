// Package scheduler is Butter's control plane: a hashicorp/raft cluster of
// 1, 3 or 5 `butter server` nodes around the state machine in package fsm,
// with a versioned HTTP JSON API on every node. Writes go to the leader
// (a follower forwards them); reads are served locally, and say so with
// ?stale.
//
// The log and stable store is raft-boltdb/v2 (docs/control-plane.md says
// why), snapshots are files, the transport is TCP.
//
// A node's ID is its HTTP API address: a follower finds where to forward a
// write from raft.LeaderWithID without a second registry.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Config configures a server node.
type Config struct {
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// HTTPAddr is the API address (host:port); it is also the node ID.
	HTTPAddr string
	// RaftAddr is the Raft TCP address (host:port).
	RaftAddr string
	// BootstrapExpect is how many servers form the first cluster: 1 starts
	// alone; 3 or 5 wait for Join peers to answer, then bootstrap together.
	BootstrapExpect int
	// Join lists other servers' HTTP addresses.
	Join []string
	// SnapshotThreshold is how many log entries trigger a snapshot; 0 is
	// raft's default.
	SnapshotThreshold uint64
	// Firer delivers timer ticks; nil runs no timer service.
	Firer Firer
	// Nomad, when set, is where the leader's deployer registers the active
	// revisions' jobs.
	Nomad  *api.Client
	Logger hclog.Logger
	// Alone marks a single node that will never have peers (butter dev):
	// it elects itself after 50 ms instead of waiting out the 500 ms
	// heartbeat timeout that a cluster needs against false failovers.
	Alone bool
}

// Server is one control-plane node.
type Server struct {
	cfg   Config
	raft  *raft.Raft
	fsm   *fsm.FSM
	store *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
	http  *http.Server
	ln    net.Listener
	log   hclog.Logger

	wg           sync.WaitGroup
	cancel       context.CancelFunc
	timerCancel  context.CancelFunc
	deployCancel context.CancelFunc
}

// Start opens the stores, starts Raft and the API, and bootstraps when
// this is a new cluster.
func Start(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.BootstrapExpect == 0 {
		cfg.BootstrapExpect = 1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Server{cfg: cfg, fsm: fsm.New(), log: cfg.Logger}
	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("open the raft store: %w", err)
	}
	s.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 3, cfg.Logger.Named("snapshots"))
	if err != nil {
		store.Close()
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft address: %w", err)
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 5*time.Second, cfg.Logger.Named("transport"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft transport: %w", err)
	}
	s.trans = trans
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.HTTPAddr)
	rc.Logger = cfg.Logger.Named("raft")
	// Faster failure detection than raft's 1s defaults: a new leader within
	// about a second on loopback or a LAN.
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	if cfg.Alone && cfg.BootstrapExpect == 1 && len(cfg.Join) == 0 {
		rc.HeartbeatTimeout = 50 * time.Millisecond
		rc.ElectionTimeout = 50 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		rc.TrailingLogs = cfg.SnapshotThreshold / 2
		rc.SnapshotInterval = time.Second
	}
	s.snaps = snaps
	r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(ln)
	}()

	if cfg.Firer != nil {
		tctx, tcancel := context.WithCancel(context.Background())
		s.timerCancel = tcancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runTimers(tctx, cfg.Firer)
		}()
	}
	if cfg.Nomad != nil {
		dctx, dcancel := context.WithCancel(context.Background())
		s.deployCancel = dcancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runDeployer(dctx, cfg.Nomad)
		}()
	}
	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	if !hasState {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.bootstrap(ctx)
		}()
	}
	return s, nil
}

// self is what a node tells its peers about itself.
type self struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
}

// bootstrap waits until BootstrapExpect servers answer, then bootstraps
// the same configuration on each of them. A server already part of a
// cluster (a peer reports a leader) is left for the leader to add.
func (s *Server) bootstrap(ctx context.Context) {
	servers := []raft.Server{{ID: raft.ServerID(s.cfg.HTTPAddr), Address: raft.ServerAddress(s.cfg.RaftAddr)}}
	seen := map[string]bool{s.cfg.HTTPAddr: true}
	for len(servers) < s.cfg.BootstrapExpect {
		for _, peer := range s.cfg.Join {
			if seen[peer] {
				continue
			}
			var me self
			if err := getJSON(ctx, "http://"+peer+"/v1/agent/self", &me); err == nil {
				seen[peer] = true
				servers = append(servers, raft.Server{ID: raft.ServerID(me.ID), Address: raft.ServerAddress(me.RaftAddr)})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Error("bootstrap failed", "error", err)
	}
}

// Shutdown stops the API and Raft and closes the stores.
func (s *Server) Shutdown() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.timerCancel != nil {
		s.timerCancel()
	}
	if s.deployCancel != nil {
		s.deployCancel()
	}
	if s.http != nil {
		_ = s.http.Close()
	}
	if s.raft != nil {
		_ = s.raft.Shutdown().Error()
	}
	s.wg.Wait()
	if s.trans != nil {
		_ = s.trans.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
}

// Addr returns the API address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// FSM returns the node's state machine, for reads.
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft returns the node's Raft.
func (s *Server) Raft() *raft.Raft { return s.raft }

// ErrNoLeader is returned while the cluster has no leader.
var ErrNoLeader = errors.New("no cluster leader")

// Apply writes a command through Raft on the leader.
func (s *Server) Apply(t fsm.MessageType, payload any) error {
	b, err := fsm.Encode(t, payload)
	if err != nil {
		return err
	}
	f := s.raft.Apply(b, 5*time.Second)
	if err := f.Error(); err != nil {
		return err
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return resp
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// latestSnapshot opens the newest snapshot on disk.
func (s *Server) latestSnapshot() (*raft.SnapshotMeta, io.ReadCloser, error) {
	metas, err := s.snaps.List()
	if err != nil {
		return nil, nil, err
	}
	if len(metas) == 0 {
		return nil, nil, errors.New("no snapshot yet")
	}
	return s.snaps.Open(metas[0].ID)
}
