// Package scheduler is Butter's control plane: a hashicorp/raft cluster of
// 1, 3 or 5 `butter server` nodes around the state machine in package fsm,
// with a versioned HTTP JSON API on every node. Writes go to the leader
// (a follower forwards them); reads are served locally, and say so with
// ?stale.
//
// The log and stable store is raft-boltdb/v2 (docs/control-plane.md says
// why), snapshots are files, the transport is TCP (mutual TLS with
// Config.TLS, which also serves the API over HTTPS: tls.go). Each can be
// replaced through Config, the way hashicorp/raft's own tests replace them with
// raft.InmemStore, raft.InmemSnapshotStore and raft.InmemTransport; so can
// the Nomad the deployer drives (Nomad, nomadfake) and the timer service's
// Firer.
//
// A node's ID is its HTTP API address: a follower finds where to forward a
// write from raft.LeaderWithID without a second registry.
package scheduler

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/autoscaler"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/telemetry/spanstore"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	// Kafka, when set, is the projects' Kafka: deleting a project
	// deletes its consumer groups (and, when asked, its topics) there.
	Kafka *kadm.Client
	// Nomad, when set, is where the leader's deployer registers the active
	// revisions' jobs: NewNomadClient over Nomad's API, or a fake.
	Nomad Nomad
	// Autoscale, when set, runs the autoscaler on the leader
	// (autoscale.go).
	Autoscale *AutoscaleConfig
	// KafkaConfig, when it names brokers, is how the control plane
	// reaches the projects' Kafka cluster to read dead letters and log
	// lines and replay dead letters (kafka.go): butter server's
	// -kafka-brokers, butter dev's embedded broker. Without brokers those
	// routes answer 503.
	KafkaConfig broker.Config
	// Traces keeps the spans of recent traces the web UI shows
	// (traces.go): what POST /v1/traces receives, and what butter dev
	// records itself. Nil makes one with spanstore's default bounds.
	Traces *spanstore.Store
	// Observer, when set, gives the pools' signals `butter status` and
	// the UI show while no autoscaler runs on this node (butter dev,
	// which reads its own pool); the leader's autoscaler's observations
	// come first.
	Observer Observer
	// DeploymentStart is how long the deployer waits for Nomad to create
	// the deployment of a job version it registered before it fails the
	// revision (Nomad creates none for a job it cannot evaluate, or for a
	// job without an update block); 0 is DefaultDeploymentStart.
	DeploymentStart time.Duration
	Logger          hclog.Logger
	// MaxRequestBytes bounds the JSON body of a request (a revision, a
	// timer, a key); 0 is DefaultMaxRequestBytes. A body over it is
	// answered 413 and changes nothing.
	MaxRequestBytes int64
	// MaxBlobBytes bounds a blob (a bundle or a schema), uploaded or
	// fetched from a peer; 0 is DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// ACL turns on the control plane's ACLs (acl.go): every route but
	// the public ones needs a token that grants it. Off in the zero
	// value; `butter server` turns it on by default.
	ACL bool
	// Alone marks a single node that will never have peers (butter dev):
	// it elects itself after 50 ms instead of waiting out the 500 ms
	// heartbeat timeout that a cluster needs against false failovers.
	Alone bool

	// LogStore, StableStore, SnapshotStore and Transport replace Raft's
	// durable defaults: a BoltDB file in DataDir for the log and the
	// stable store, snapshot files in DataDir, TCP on RaftAddr. Stores
	// given here are the caller's, to close after Close (a test may
	// start a new server on them); the server closes only what it opened.
	// A given Transport is closed by Raft's own shutdown, as hashicorp/raft
	// does with any transport that has a Close method (InmemTransport's
	// only disconnects it: Connect makes it usable again). With a
	// Transport, RaftAddr may be empty: its LocalAddr is used.
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore
	Transport     raft.Transport
	// Timing overrides Raft's timeouts; zero fields keep the defaults
	// (500 ms heartbeat and election, 250 ms lease; 50 ms each when Alone).
	Timing RaftTiming
	// TLS, when its CertFile is set, serves the API over HTTPS and Raft
	// over mutual TLS, and makes the node call its peers (joining,
	// forwarding, blob fetches) over HTTPS with its own certificate
	// (tls.go). A given Transport is used as it is.
	TLS TLSConfig
}

// Observer gives the last observations of pools, by
// "<project>/<pool>" (autoscaler.Observation).
type Observer interface {
	Observations() map[string]autoscaler.Observation
}

// RaftTiming is the timeouts of raft.Config that a node may override. See
// raft.Config for what each does; shorter ones fail over faster and risk
// needless elections on a loaded machine.
type RaftTiming struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// Server is one control-plane node.
type Server struct {
	cfg  Config
	raft *raft.Raft
	fsm  *fsm.FSM

	// barrierMu guards barrierTerm, the Raft term in which this node, as
	// leader, completed a barrier (leaderCaughtUp).
	barrierMu   sync.Mutex
	barrierTerm uint64
	snaps       raft.SnapshotStore
	http        *http.Server
	ln          net.Listener
	log         hclog.Logger
	// tls is the loaded TLSConfig; nil when TLS is off.
	tls *nodeTLS
	// owned are the stores and transport the server opened (not those
	// Config gave it), closed by Close after Raft stops, in order.
	owned []io.Closer

	// activateMu is held from the route check to the write of an
	// activation (routes.go).
	activateMu sync.Mutex
	// policies caches parsed ACL policies (acl.go).
	policies policyCache

	wg           sync.WaitGroup
	loops        sync.WaitGroup // the timer service and the deployer
	cancel       context.CancelFunc
	timerCancel  context.CancelFunc
	deployCancel context.CancelFunc
	scaleCancel  context.CancelFunc // the autoscaler (autoscale.go)
	// scaler is the autoscaler running on this leader, nil elsewhere
	// (autoscale.go); wakes go to it (wake.go).
	scaler atomic.Pointer[autoscaler.Autoscaler]
	// metrics is the registry GET /metrics serves (metrics.go), and
	// scaleMetrics the autoscaler's in it.
	metrics      *prometheus.Registry
	scaleMetrics *autoscaler.Metrics
	// obs are the control plane's own series in it (metrics.go).
	obs *serverMetrics
	// kafka is the client of Config.KafkaConfig (kafka.go), made on first use.
	kafkaMu     sync.Mutex
	kafka       *kgo.Client
	kafkaClosed bool
	// traces is Config.Traces, or the server's own (traces.go).
	traces *spanstore.Store
	// canary holds the gateways' reports of canaries (canary.go).
	canary canaryReports
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
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxBlobBytes <= 0 {
		cfg.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Server{cfg: cfg, fsm: fsm.New(), log: cfg.Logger, metrics: prometheus.NewRegistry(), traces: cfg.Traces}
	if s.traces == nil {
		s.traces = &spanstore.Store{}
	}
	s.scaleMetrics = autoscaler.NewMetrics(s.metrics)
	s.obs = newServerMetrics(s.metrics, s)
	var err error
	if s.tls, err = loadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	s.removePartialBlobs()
	logs, stable, snaps, trans, err := s.openRaftStores()
	if err != nil {
		s.closeOwned()
		return nil, err
	}
	s.snaps = snaps
	if s.cfg.RaftAddr == "" {
		s.cfg.RaftAddr = string(trans.LocalAddr())
	}
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
	cfg.Timing.apply(rc)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		rc.TrailingLogs = cfg.SnapshotThreshold / 2
		rc.SnapshotInterval = time.Second
	}
	r, err := raft.NewRaft(rc, s.fsm, logs, stable, snaps, trans)
	if err != nil {
		s.closeOwned()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	var h http.Handler = s.handler()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls.loaded.ServerConfig(cfg.TLS.VerifyClient))
		if cfg.TLS.VerifyClient {
			h = requireClientCert(h)
		}
	}
	s.ln = ln
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: cfg.Logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(ln)
	}()

	if cfg.Firer != nil {
		tctx, tcancel := context.WithCancel(context.Background())
		s.timerCancel = tcancel
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.runTimers(tctx, cfg.Firer)
		}()
	}
	if cfg.Nomad != nil {
		dctx, dcancel := context.WithCancel(context.Background())
		s.deployCancel = dcancel
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.runDeployer(dctx, cfg.Nomad)
		}()
	}
	if cfg.Autoscale != nil {
		actx, acancel := context.WithCancel(context.Background())
		s.scaleCancel = acancel
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.runAutoscaler(actx, *cfg.Autoscale)
		}()
	}
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		s.Close()
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
			if err := s.getJSON(ctx, s.peerURL(peer)+"/v1/agent/self", &me); err == nil {
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

// Close stops the timer service and the deployer, then the API and
// Raft, and closes the stores it opened. The timer service and the
// deployer stop first, while Raft still runs: a tick being fired is
// recorded (or not fired), so the next leader neither fires it again nor
// misses it.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.timerCancel != nil {
		s.timerCancel()
	}
	if s.deployCancel != nil {
		s.deployCancel()
	}
	if s.scaleCancel != nil {
		s.scaleCancel()
	}
	s.loops.Wait()
	if s.http != nil {
		_ = s.http.Close()
	}
	if s.raft != nil {
		_ = s.raft.Shutdown().Error()
	}
	s.wg.Wait()
	s.closeKafka()
	s.closeOwned()
	if s.tls != nil {
		s.tls.peers.CloseIdleConnections()
	}
}

// openRaftStores opens Raft's log, stable and snapshot stores and its
// transport: those Config gives, and the durable defaults for the others.
func (s *Server) openRaftStores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, raft.Transport, error) {
	cfg := s.cfg
	logs, stable, snaps, trans := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore, cfg.Transport
	if logs == nil || stable == nil {
		store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("open the raft store: %w", err)
		}
		s.owned = append(s.owned, store)
		if logs == nil {
			logs = store
		}
		if stable == nil {
			stable = store
		}
	}
	if snaps == nil {
		fs, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 3, cfg.Logger.Named("snapshots"))
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("open the snapshot store: %w", err)
		}
		snaps = fs
	}
	if trans == nil && s.tls != nil {
		layer, err := NewStreamLayer(cfg.RaftAddr, s.tls.loaded, s.tls.peerName)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: layer, MaxPool: 3, Timeout: 5 * time.Second, Logger: cfg.Logger.Named("transport"),
		})
		s.owned = append([]io.Closer{nt}, s.owned...)
		trans = nt
	}
	if trans == nil {
		addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("raft address: %w", err)
		}
		tcp, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 5*time.Second, cfg.Logger.Named("transport"))
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("raft transport: %w", err)
		}
		// Closed before the store: Close closes in this order.
		s.owned = append([]io.Closer{tcp}, s.owned...)
		trans = tcp
	}
	return logs, stable, snaps, trans, nil
}

// closeOwned closes what the server opened, once.
func (s *Server) closeOwned() {
	for _, c := range s.owned {
		_ = c.Close()
	}
	s.owned = nil
}

// apply sets the non-zero timeouts on rc.
func (t RaftTiming) apply(rc *raft.Config) {
	if t.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = t.HeartbeatTimeout
	}
	if t.ElectionTimeout > 0 {
		rc.ElectionTimeout = t.ElectionTimeout
	}
	if t.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	}
	if t.CommitTimeout > 0 {
		rc.CommitTimeout = t.CommitTimeout
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

func (s *Server) getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := s.peerClient(0).Do(req)
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
