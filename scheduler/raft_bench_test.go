package scheduler_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/hashicorp/raft"
)

// benchNode is one server of a benchmark cluster, restartable on the
// same addresses and data dir.
type benchNode struct {
	cfg scheduler.Config
	srv *scheduler.Server // nil while stopped
}

// benchCluster starts n servers in this process on real TCP transports
// on 127.0.0.1, each with its BoltDB log on this machine's disk, and
// waits for a leader. They stop when b ends.
func benchCluster(b *testing.B, n int) []*benchNode {
	b.Helper()
	var https, rafts []string
	for range n {
		https, rafts = append(https, harness.FreeAddr(b)), append(rafts, harness.FreeAddr(b))
	}
	var nodes []*benchNode
	for i := range n {
		var join []string
		for j := range n {
			if j != i {
				join = append(join, https[j])
			}
		}
		nodes = append(nodes, &benchNode{cfg: scheduler.Config{
			DataDir: filepath.Join(b.TempDir(), fmt.Sprint(i)), HTTPAddr: https[i], RaftAddr: rafts[i],
			BootstrapExpect: n, Join: join,
		}})
	}
	for _, nd := range nodes {
		nd.start(b)
	}
	b.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop()
		}
	})
	benchLeader(b, nodes, 30*time.Second)
	return nodes
}

func (nd *benchNode) start(b *testing.B) {
	s, err := scheduler.Start(nd.cfg)
	if err != nil {
		b.Fatal(err)
	}
	nd.srv = s
}

func (nd *benchNode) stop() {
	if nd.srv != nil {
		nd.srv.Close()
		nd.srv = nil
	}
}

// benchLeader waits until a running node is leader and every running node
// knows it, and returns the leader.
func benchLeader(b *testing.B, nodes []*benchNode, d time.Duration) *benchNode {
	b.Helper()
	deadline := time.Now().Add(d)
	for {
		var leader *benchNode
		agreed := true
		for _, nd := range nodes {
			if nd.srv == nil {
				continue
			}
			if nd.srv.Raft().State() == raft.Leader {
				leader = nd
			}
			if _, id := nd.srv.Raft().LeaderWithID(); id == "" {
				agreed = false
			}
		}
		if leader != nil && agreed {
			return leader
		}
		if time.Now().After(deadline) {
			b.Fatalf("no leader known to every node after %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var benchSeq atomic.Int64

// benchWrite writes one project through Raft on s.
func benchWrite(s *scheduler.Server) error {
	return s.Apply(fsm.ProjectUpsertType, fsm.Project{Name: fmt.Sprintf("bench-%d", benchSeq.Add(1)), Created: time.Now().UTC()})
}

// BenchmarkRaftWrite measures writes through Raft on the leader
// (Server.Apply of a project upsert, the command `PUT /v1/projects/{name}`
// applies), one at a time (seq) and from 64 writers at once (c64), and
// reports each write's p50 and p99 and, with 64 writers, writes per
// second. Each write is in the leader's BoltDB log (fsync) and, on 3
// nodes, in a majority's before it is applied and acknowledged.
//
// The baseline of each is a 1-node cluster on the same disk, in the same
// run: the same writes without replication.
func BenchmarkRaftWrite(b *testing.B) {
	clusters := map[string][]*benchNode{"baseline": benchCluster(b, 1), "3-nodes": benchCluster(b, 3)}
	for _, mode := range []string{"seq", "c64"} {
		b.Run(mode, func(b *testing.B) {
			for _, name := range []string{"baseline", "3-nodes"} {
				leader := benchLeader(b, clusters[name], 30*time.Second).srv
				b.Run(name, func(b *testing.B) {
					if mode == "seq" {
						var lat harness.Latencies
						for b.Loop() {
							t := time.Now()
							err := benchWrite(leader)
							lat.Add(time.Since(t))
							if err != nil {
								b.Fatal(err)
							}
						}
						lat.Report(b)
						return
					}
					benchParallelWrites(b, leader, 64)
				})
			}
		})
	}
}

// benchParallelWrites runs b.N writes from writers goroutines and reports
// their latencies and the writes per second.
func benchParallelWrites(b *testing.B, leader *scheduler.Server, writers int) {
	var mu sync.Mutex
	var all harness.Latencies
	var failed atomic.Value
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	n := int64(b.N)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat harness.Latencies
			for next.Add(1) <= n {
				t := time.Now()
				err := benchWrite(leader)
				lat.Add(time.Since(t))
				if err != nil {
					failed.Store(err)
					return
				}
			}
			mu.Lock()
			all.Merge(&lat)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all.Report(b)
	b.ReportMetric(float64(b.N)/el.Seconds(), "writes/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/op")
}

// BenchmarkLeaderChange measures the time from a leader change until the
// next write is acknowledged, on a 3-node cluster (real TCP transports),
// one change per operation:
//
//   - baseline: a planned change (raft's leadership transfer);
//   - leader-loss: the leader stops dead (its Raft and transport shut
//     down without a word to its peers, as a crash or SIGKILL leaves
//     them): the followers notice the missing heartbeats, elect a new
//     leader, and the write goes through. The stopped node is then
//     restarted on its data dir and caught up, outside the timing.
//
// A write is retried every 5ms on whichever node is leader. Run it with
// -benchtime=10x or so: each operation is one change.
func BenchmarkLeaderChange(b *testing.B) {
	nodes := benchCluster(b, 3)
	untilWrite := func(b *testing.B) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			for _, nd := range nodes {
				if nd.srv != nil && nd.srv.Raft().State() == raft.Leader && benchWrite(nd.srv) == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("no write acknowledged 30s after the leader change")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.Run("baseline", func(b *testing.B) {
		var lat harness.Latencies
		for b.Loop() {
			b.StopTimer()
			leader := benchLeader(b, nodes, 30*time.Second)
			if err := benchWrite(leader.srv); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t := time.Now()
			if err := leader.srv.Raft().LeadershipTransfer().Error(); err != nil && !errors.Is(err, raft.ErrNotLeader) {
				b.Fatal(err)
			}
			untilWrite(b)
			lat.Add(time.Since(t))
		}
		lat.Report(b)
	})
	b.Run("leader-loss", func(b *testing.B) {
		var lat harness.Latencies
		for b.Loop() {
			b.StopTimer()
			leader := benchLeader(b, nodes, 30*time.Second)
			if err := benchWrite(leader.srv); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t := time.Now()
			leader.stop()
			untilWrite(b)
			lat.Add(time.Since(t))
			b.StopTimer()
			leader.start(b)
			benchCaughtUp(b, nodes)
			b.StartTimer()
		}
		lat.Report(b)
	})
}

// benchCaughtUp waits until every node has applied the leader's last
// index.
func benchCaughtUp(b *testing.B, nodes []*benchNode) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader := benchLeader(b, nodes, 30*time.Second)
		want := leader.srv.Raft().AppliedIndex()
		ok := true
		for _, nd := range nodes {
			if nd.srv.Raft().AppliedIndex() < want {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("a restarted node did not catch up within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
