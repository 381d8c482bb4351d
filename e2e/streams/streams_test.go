// Package streams tests `butter pool` consuming streams as a process: no
// event lost and order kept per key while the pool is SIGKILLed, and
// memory bounded under back-pressure.
package streams

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/plugins/pool"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// poolProc is a `butter pool` process consuming streams.
type poolProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startPool(t *testing.T, cfgPath, brokers string, extra ...string) *poolProc {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), append([]string{"pool", "-config", cfgPath, "-kafka-brokers", brokers, "-listen", "127.0.0.1:0", "-session-timeout", "6s"}, extra...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &poolProc{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "pool listening on") {
				close(ready)
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("pool exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("pool not ready after 2m")
	}
	t.Cleanup(func() { p.kill() })
	return p
}

// kill SIGKILLs the pool and its whole process group (its workers).
func (p *poolProc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

func writePoolConfig(t *testing.T, cfg pool.Config) string {
	t.Helper()
	b, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "pool.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStreamCrashRecovery: 10,000 keyed events while the pool process is
// SIGKILLed at three random moments. After recovery the output holds every
// event by id, in order per key; at-least-once allows duplicates, which
// the test prints.
func TestStreamCrashRecovery(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), []broker.Topic{{Name: "c.in", Partitions: 6}, {Name: "c.out", Partitions: 6}}); err != nil {
		t.Fatal(err)
	}
	gofn, _ := filepath.Abs(filepath.Join(e2etest.Root(), "plugins", "pool", "testdata", "gofn"))
	cfgPath := writePoolConfig(t, pool.Config{Project: "c", Pool: "p", Functions: []pool.FunctionConfig{{
		Name: "up", Runtime: "go", Bundle: gofn, Timeout: "10s", Memory: 64, MaxInstances: 4, Concurrency: 1,
		Output:  "c.out",
		Streams: []pool.StreamTrigger{{Stream: "c.in", Group: "butter.c.up.c.in", Offset: "first"}},
	}}})

	const n, keys = 10000, 50
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Sprintf("e-%05d", i)
		recs = append(recs, broker.NewEvent("c.in", []byte(fmt.Sprintf("k%02d", i%keys)), []byte(v), v, "test", "test"))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Read the output as it grows, in order per partition.
	outCl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ConsumeTopics("c.out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer outCl.Close()
	seen := map[string]int{}
	perKey := map[string][]string{}
	total := 0
	read := func(until func() bool, within time.Duration) bool {
		rctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		for !until() && rctx.Err() == nil {
			outCl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
				// The input's id: an output's own is derived from it.
				id := broker.Header(r, "ce_inputid")
				seen[id]++
				total++
				perKey[string(r.Key)] = append(perKey[string(r.Key)], id)
				if string(r.Value) != strings.ToUpper(id) {
					t.Errorf("output of %s is %q", id, r.Value)
				}
			})
		}
		return until()
	}

	p := startPool(t, cfgPath, dev.Addr)
	kills := []int{rand.IntN(2500) + 500, rand.IntN(2500) + 3500, rand.IntN(2500) + 6500}
	for i, at := range kills {
		if !read(func() bool { return len(seen) >= at }, 2*time.Minute) {
			t.Fatalf("only %d events handled before kill %d", len(seen), i+1)
		}
		p.kill()
		p = startPool(t, cfgPath, dev.Addr)
	}
	if !read(func() bool { return len(seen) >= n }, 3*time.Minute) {
		t.Fatalf("after recovery %d of %d events reached the output", len(seen), n)
	}
	for i := range n {
		if id := fmt.Sprintf("e-%05d", i); seen[id] == 0 {
			t.Fatalf("event %s was lost", id)
		}
	}
	// Order per key: first occurrences come in event order.
	for k, ids := range perKey {
		last := -1
		first := map[string]bool{}
		for _, id := range ids {
			if first[id] {
				continue
			}
			first[id] = true
			seq, _ := strconv.Atoi(strings.TrimPrefix(id, "e-"))
			if seq < last {
				t.Fatalf("key %s: %s came after e-%05d", k, id, last)
			}
			last = seq
		}
	}
	t.Logf("10,000 events, pool SIGKILLed after %v handled events: %d outputs, %d duplicates (at-least-once)", kills, total, total-n)
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// TestStreamBackPressure: a backlog much larger than the memory bound
// waits in Kafka while the function cannot keep up. The pool fetches in
// bounded batches and polls again only when a batch is handled, so the
// backlog stays in Kafka and the pool's memory stays bounded.
//
// Nothing here depends on how fast the machine is. The backlog, 256 MiB,
// is in the broker before the pool starts, and the function handles
// nothing until the test opens a gate: the pool can only fetch. The
// broker (kfake, in this process) records how far the pool's fetches
// have gone; the pool has every chance to run ahead while it sends its
// group three heartbeats (six seconds or more of its own time). It may
// hold one poll and one buffered fetch (1 MiB a partition; its fetches
// do not get past offset 0 here): it must fetch no further than 16 MiB
// into the backlog, and its RSS stay under 100 MiB (it idles at about
// 40). A pool that fetches ahead takes its first 16 MiB at once and
// fails; one that buffered the backlog would need 256 MiB more. Then the
// gate opens and the pool commits its first batches.
func TestStreamBackPressure(t *testing.T) {
	const (
		partitions   = 3
		payloadSize  = 4096
		backlog      = 64 << 10 // events: 256 MiB
		maxAhead     = 16 << 20 // bytes fetched past what is handled
		maxRSS       = 100      // MiB
		beats        = 3        // heartbeats the pool is watched for
		handledAfter = 100      // events handled once the gate opens
	)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	// What the pool asks the broker for: the offset each fetch starts at,
	// per partition (the highest seen), and its heartbeats. Only the pool
	// fetches and heartbeats here. Control functions run on the broker's
	// goroutine and let it answer the requests as usual.
	var mu sync.Mutex
	fetchedTo := map[string]int64{}
	heartbeats := 0
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			for _, p := range tp.Partitions {
				k := fmt.Sprint(tp.Topic, tp.TopicID, p.Partition)
				fetchedTo[k] = max(fetchedTo[k], p.FetchOffset)
			}
		}
		return nil, nil, false
	})
	for _, key := range []kmsg.Key{kmsg.Heartbeat, kmsg.ConsumerGroupHeartbeat} {
		cluster.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			mu.Lock()
			defer mu.Unlock()
			heartbeats++
			return nil, nil, false
		})
	}
	fetched := func() (events int64, beat int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range fetchedTo {
			events += n
		}
		return events, heartbeats
	}
	addr := cluster.ListenAddrs()[0]

	// Uncompressed: the backlog's size is what a pool that buffered it
	// would hold (this payload compresses twenty-fold).
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), []broker.Topic{{Name: "bp.in", Partitions: partitions}, {Name: "bp.out", Partitions: partitions}}); err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", payloadSize))
	for range backlog {
		cl.Produce(ctx, &kgo.Record{Topic: "bp.in", Value: payload}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// The function: each call marks its start, then waits for the gate.
	// Not t.TempDir: its cleanup fails the test when a `touch` forked by
	// an instance just before the pool was killed creates its file after
	// the directory was listed. This cleanup runs after the pool's kill
	// (cleanups run last-registered first) and retries until the
	// instances' stragglers are gone.
	dir, err := os.MkdirTemp("", "bp-gate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e2etest.WaitFor(t, time.Minute, "the gate directory removed once the instances are gone", func() bool {
			return os.RemoveAll(dir) == nil
		})
	})
	gate, started := filepath.Join(dir, "gate"), filepath.Join(dir, "started")
	cfgPath := writePoolConfig(t, pool.Config{Project: "bp", Pool: "p", Functions: []pool.FunctionConfig{{
		Name: "slow", Runtime: "exec", Bundle: t.TempDir(),
		Command: []string{"sh", "-c", fmt.Sprintf("touch %s.$$; while [ ! -e %s ]; do sleep 0.05; done; cat", started, gate)},
		Timeout: "10m", Memory: 16, MaxInstances: 2, Concurrency: 1, Output: "bp.out",
		Streams: []pool.StreamTrigger{{Stream: "bp.in", Group: "butter.bp.slow.bp.in", Offset: "first"}},
	}}})
	p := startPool(t, cfgPath, addr)
	pid := p.cmd.Process.Pid

	// Watch the pool from its first call in flight for beats heartbeats,
	// or until it has fetched too far.
	peak := 0.0
	e2etest.WaitFor(t, 2*time.Minute, "a call in flight", func() bool {
		peak = max(peak, rssMiB(pid))
		m, _ := filepath.Glob(started + ".*")
		return len(m) > 0
	})
	_, from := fetched()
	e2etest.WaitFor(t, 5*time.Minute, fmt.Sprintf("%d heartbeats of the pool", beats), func() bool {
		peak = max(peak, rssMiB(pid))
		n, beat := fetched()
		return beat >= from+beats || n*payloadSize > maxAhead
	})
	ahead, _ := fetched()
	t.Logf("back-pressure: %d events (%d MiB) waiting, the function blocked: the pool fetched %d events (%.1f MiB); its RSS peaked at %.1f MiB",
		backlog, backlog*payloadSize>>20, ahead, float64(ahead*payloadSize)/(1<<20), peak)
	if ahead*payloadSize > maxAhead {
		t.Errorf("the pool fetched %.1f MiB while it could handle nothing, want at most %d MiB: it does not wait for its batches", float64(ahead*payloadSize)/(1<<20), maxAhead>>20)
	}
	if peak == 0 || peak > maxRSS {
		t.Errorf("the pool's RSS peaked at %.1f MiB with %d MiB waiting; the bound is %d MiB", peak, backlog*payloadSize>>20, maxRSS)
	}

	// Open the gate: the pool works through the backlog, committing.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	e2etest.WaitFor(t, 5*time.Minute, fmt.Sprintf("%d events handled once the gate opened", handledAfter), func() bool {
		lag, err := adm.Lag(ctx, "butter.bp.slow.bp.in")
		if err != nil {
			return false
		}
		n := int64(0)
		for _, l := range lag["butter.bp.slow.bp.in"].Lag.Sorted() {
			n += max(l.Commit.At, 0)
		}
		return n >= handledAfter
	})
}
