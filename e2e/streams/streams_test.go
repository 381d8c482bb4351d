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
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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

func startPool(t *testing.T, cfgPath, brokers string) *poolProc {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), "pool", "-config", cfgPath, "-kafka-brokers", brokers, "-listen", "127.0.0.1:0", "-session-timeout", "6s")
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
				id := broker.Header(r, broker.HeaderID)
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

// TestStreamBackPressure: producers run ten times faster than the
// function. The pool fetches in bounded batches and polls again only when
// a batch is handled, so the backlog stays in Kafka and the pool's memory
// stays bounded. The bound, 150 MiB, is generous: the pool idles at about
// 30 MiB; the point is that it does not grow with the backlog (here over
// 60 MiB of events).
func TestStreamBackPressure(t *testing.T) {
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), []broker.Topic{{Name: "bp.in", Partitions: 3}, {Name: "bp.out", Partitions: 3}}); err != nil {
		t.Fatal(err)
	}
	cfgPath := writePoolConfig(t, pool.Config{Project: "bp", Pool: "p", Functions: []pool.FunctionConfig{{
		Name: "slow", Runtime: "exec", Command: []string{"sh", "-c", "sleep 0.01; cat"}, Bundle: t.TempDir(),
		Timeout: "10s", Memory: 16, MaxInstances: 2, Concurrency: 1, Output: "bp.out",
		Streams: []pool.StreamTrigger{{Stream: "bp.in", Group: "butter.bp.slow.bp.in", Offset: "first"}},
	}}})
	p := startPool(t, cfgPath, dev.Addr)
	pid := p.cmd.Process.Pid

	payload := strings.Repeat("x", 2048)
	const seconds, rate = 10, 3000 // events per second offered
	stop := time.Now().Add(seconds * time.Second)
	produced := 0
	maxRSS := 0.0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(stop) {
		<-tick.C
		for range rate / 10 {
			cl.Produce(ctx, &kgo.Record{Topic: "bp.in", Value: []byte(payload)}, nil)
			produced++
		}
		maxRSS = max(maxRSS, rssMiB(pid))
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// How far the function got: its committed offsets (a partition with
	// none yet counts 0). On a loaded machine the first commit may come
	// after the offering ends: wait for it, with a deadline, still
	// watching the pool's memory.
	committed := func() int64 {
		lag, err := kadm.NewClient(cl).Lag(ctx, "butter.bp.slow.bp.in")
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, l := range lag["butter.bp.slow.bp.in"].Lag.Sorted() {
			n += max(l.Commit.At, 0)
		}
		return n
	}
	handled := committed()
	for deadline := time.Now().Add(2 * time.Minute); handled == 0 && time.Now().Before(deadline); handled = committed() {
		<-tick.C
		maxRSS = max(maxRSS, rssMiB(pid))
	}
	t.Logf("back-pressure: %d events (%.0f MiB) offered in %ds, %d handled (%.1fx mismatch); pool RSS peaked at %.1f MiB (bound 150 MiB)",
		produced, float64(produced*len(payload))/(1<<20), seconds, handled, float64(produced)/float64(max(handled, 1)), maxRSS)
	if handled == 0 || float64(produced)/float64(handled) < 3 {
		t.Errorf("no mismatch to test: %d offered, %d handled", produced, handled)
	}
	if maxRSS == 0 || maxRSS > 150 {
		t.Errorf("pool RSS peaked at %.1f MiB; the bound is 150 MiB", maxRSS)
	}
}
