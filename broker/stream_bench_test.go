package broker_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/bench/harness"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// benchEvents is how many events each pass of BenchmarkStream carries
// from its input topic to its output topic, by variant: enough for about
// a second of work or more, so that the 10ms sampling of the committed
// offsets costs little precision.
var benchEvents = map[string]int{"baseline": 400000, "raw-per-record": 50000, "go": 300000, "go-key-order": 50000,
	"raw-eos": 200000, "go-eos": 150000, "exec": 3000, "exec-lines": 50000}

const (
	// benchPartitions is the partition count of both topics.
	benchPartitions = 3
	// benchPoll is the records per poll: the pool's own bound
	// (pollBatch in plugins/pool/streams.go), so that both loops hold the
	// same number of records in flight.
	benchPoll = 256
	// benchTxnPoll is the records per transaction of raw-eos: the pool's
	// own bound for an exactly-once trigger (txPoll in
	// plugins/pool/transact.go), for the same reason.
	benchTxnPoll = 4096
)

// BenchmarkStream measures events per second from one topic to another
// through the embedded broker (kfake over TCP on 127.0.0.1), each event a
// CloudEvent of 13 bytes with one of 64 keys, committed only once its
// output is acknowledged (acks from all in-sync replicas), in three ways:
//
//   - baseline: a raw franz-go consume→produce loop, the way franz-go's
//     examples write one: poll up to 256 records, produce each one's
//     output asynchronously, wait for the batch's acknowledgements, commit;
//   - raw-per-record: the same loop handling each partition's records one
//     at a time, waiting for each output's acknowledgement before the
//     next, partitions in parallel: the pool's order, without a function;
//   - go: a pool consuming the topic with the Go echo function
//     (bench/functions/echo-go) as a stream-to-stream function, output
//     to the output topic, in partition order (the default): one event of
//     a partition at a time;
//   - go-key-order: the same with order = "key" and 64 calls at once per
//     instance: each key's events in order, different keys in parallel;
//   - raw-eos: a raw franz-go transactional loop (GroupTransactSession,
//     read_committed): poll up to 4096 records (the pool's bound for a transaction), begin a transaction,
//     produce each one's output asynchronously, end it with the poll's
//     offsets;
//   - go-eos: the go pool with exactly_once = true on its trigger: each
//     poll one transaction (plugins/pool/transact.go). Its figure is
//     compared with raw-eos, next to go's (at least once) with baseline;
//   - exec: the exec echo (cat) as the stream function, a process forked
//     per event (mode = "fork", the default), one instance per partition;
//   - exec-lines: the same command with mode = "lines": one cat process
//     per instance, an event per line.
//
// Each pass starts a broker of its own (start, below), preloads its
// events (benchEvents), starts the consumer, and
// watches the group's committed offsets every 10ms: the rate is the
// events committed between the first commit seen and the last, over
// that time, so that joining the group is not counted.
func BenchmarkStream(b *testing.B) {
	sdks := harness.SDKs(b)
	pass := 0
	// start starts a broker for one pass, with a fresh input and output
	// topic, the input preloaded with n events. Every pass has a broker
	// of its own, closed after it, and starts from a collected heap: the
	// broker, the pools and the loops share this process, and the records
	// of the passes before (millions, in memory) would otherwise make a
	// later pass's garbage collection dearer or cheaper than an earlier
	// one's, whichever variant it measures.
	start := func(b *testing.B, n int) (dev *broker.Dev, adm *kadm.Client, in, out, group string) {
		pass++
		in, out, group = fmt.Sprintf("bench.in-%d", pass), fmt.Sprintf("bench.out-%d", pass), fmt.Sprintf("bench.group-%d", pass)
		runtime.GC()
		dev, err := broker.StartDev(0, "")
		if err != nil {
			b.Fatal(err)
		}
		admCl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr))
		if err != nil {
			dev.Close()
			b.Fatal(err)
		}
		adm = kadm.NewClient(admCl)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := broker.EnsureTopics(ctx, adm, []broker.Topic{{Name: in, Partitions: benchPartitions}, {Name: out, Partitions: benchPartitions}, {Name: in + ".dlq", Partitions: 1}}); err != nil {
			admCl.Close()
			dev.Close()
			b.Fatal(err)
		}
		benchPreload(b, dev.Addr, in, n)
		return dev, adm, in, out, group
	}
	stop := func(dev *broker.Dev, adm *kadm.Client) {
		adm.Close()
		dev.Close()
	}

	for _, perRecord := range []bool{false, true} {
		name := "baseline"
		if perRecord {
			name = "raw-per-record"
		}
		b.Run(name, func(b *testing.B) {
			n := benchEvents[name]
			for b.Loop() {
				dev, adm, in, out, group := start(b, n)
				benchRate(b, adm, group, in, n, func(ctx context.Context) { benchRawLoop(ctx, b, dev.Addr, in, out, group, perRecord) })
				stop(dev, adm)
			}
		})
	}
	b.Run("raw-eos", func(b *testing.B) {
		n := benchEvents["raw-eos"]
		for b.Loop() {
			dev, adm, in, out, group := start(b, n)
			benchRate(b, adm, group, in, n, func(ctx context.Context) { benchRawTxnLoop(ctx, b, dev.Addr, in, out, group) })
			stop(dev, adm)
		}
	})
	for _, order := range []string{"partition", "key", "eos", "exec", "exec-lines"} {
		name, rt := "go", "go"
		switch order {
		case "key":
			name = "go-key-order"
		case "eos":
			name, order = "go-eos", "partition"
		case "exec", "exec-lines":
			name, rt, order = order, "exec", "partition"
		}
		b.Run(name, func(b *testing.B) {
			n := benchEvents[name]
			for b.Loop() {
				dev, adm, in, out, group := start(b, n)
				fc := harness.Echo(b, "echo", rt)
				fc.MinInstances, fc.MaxInstances, fc.Concurrency = 1, 1, benchPartitions
				switch {
				case order == "key":
					fc.Concurrency = 64
				case rt == "exec":
					// A process per event, or a process per instance
					// taking one event at a time: an instance per
					// partition.
					fc.MinInstances, fc.MaxInstances, fc.Concurrency = benchPartitions, benchPartitions, 1
					if name == "exec-lines" {
						fc.ExecMode = "lines"
					}
				}
				fc.Streams = []pool.StreamTrigger{{Stream: in, Group: group, Offset: "first", Order: order, ExactlyOnce: name == "go-eos"}}
				fc.Output = out
				p := harness.StartPool(b, sdks, []pool.FunctionConfig{fc})
				benchRate(b, adm, group, in, n, func(ctx context.Context) {
					if err := p.StartStreams(ctx, dev.Config()); err != nil {
						b.Error(err)
						return
					}
					<-ctx.Done()
				})
				p.Close()
				stop(dev, adm)
			}
		})
	}
}

// benchPreload produces n events to topic and waits for them.
func benchPreload(b *testing.B, addr, topic string, n int) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerLinger(5 * time.Millisecond)}, broker.ProducerOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		r := broker.NewEvent(topic, fmt.Appendf(nil, "key-%02d", i%64), []byte("hello, butter"), fmt.Sprint(i), "bench", "bench.event")
		wg.Add(1)
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// benchRate runs consume until the n events of topic are committed by
// group, watching the committed offsets, and reports the rate between the
// first commit seen and the last as events/s (and ns/op per event).
func benchRate(b *testing.B, adm *kadm.Client, group, topic string, n int, consume func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		consume(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	var first time.Time
	var firstN int64
	deadline := time.Now().Add(5 * time.Minute)
	for {
		time.Sleep(10 * time.Millisecond)
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			continue // the group may not exist yet
		}
		var done int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil {
				done += o.At
			}
		})
		now := time.Now()
		if done > 0 && first.IsZero() {
			first, firstN = now, done
		}
		if done >= int64(n) {
			el := now.Sub(first)
			if el <= 0 || done == firstN {
				b.Fatalf("every event was committed in the first commit seen: nothing to time (raise benchEvents)")
			}
			rate := float64(done-firstN) / el.Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(1e9/rate, "ns/op")
			return
		}
		if now.After(deadline) {
			b.Fatalf("%d of %d events committed after 5 minutes", done, n)
		}
	}
}

// benchRawLoop consumes topic in with group and produces each record's
// output to out until ctx ends, committing each batch once its outputs
// are acknowledged. perRecord handles each partition's records one at a
// time with a synchronous produce, partitions in parallel; otherwise the
// batch's outputs are produced at once.
func benchRawLoop(ctx context.Context, b *testing.B, addr, in, out, group string, perRecord bool) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(8 << 20),
	}, broker.ProducerOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Error(err)
		return
	}
	defer cl.Close()
	output := func(r *kgo.Record) *kgo.Record {
		return broker.NewEvent(out, r.Key, r.Value, broker.Header(r, broker.HeaderID), "bench/raw", "butter.output")
	}
	for {
		fetches := cl.PollRecords(ctx, benchPoll)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			return
		}
		if perRecord {
			var wg sync.WaitGroup
			fetches.EachPartition(func(p kgo.FetchTopicPartition) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, r := range p.Records {
						if err := cl.ProduceSync(ctx, output(r)).FirstErr(); err != nil && ctx.Err() == nil {
							b.Error(err)
						}
					}
				}()
			})
			wg.Wait()
		} else {
			var recs []*kgo.Record
			fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, output(r)) })
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			b.Error(err)
		}
		cl.AllowRebalance()
	}
}

// benchRawTxnLoop is benchRawLoop's batch loop in transactions, the way
// franz-go's exactly-once example writes one: a GroupTransactSession
// reading read_committed; each poll's outputs and offsets are one
// transaction.
func benchRawTxnLoop(ctx context.Context, b *testing.B, addr, in, out, group string) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(8 << 20),
		kgo.TransactionalID(group + ".raw"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}, broker.ProducerOpts()...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		b.Error(err)
		return
	}
	// Closing leaves the group: the rebalance must be let in.
	defer sess.CloseAllowingRebalance()
	for {
		sess.AllowRebalance()
		fetches := sess.PollRecords(ctx, benchTxnPoll)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			b.Error(err)
			return
		}
		fetches.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, broker.NewEvent(out, r.Key, r.Value, broker.Header(r, broker.HeaderID), "bench/raw", "butter.output"), func(_ *kgo.Record, err error) {
				if err != nil && ctx.Err() == nil {
					b.Error(err)
				}
			})
		})
		if _, err := sess.End(context.WithoutCancel(ctx), kgo.TryCommit); err != nil {
			if ctx.Err() == nil {
				b.Error(err)
			}
			return
		}
	}
}
