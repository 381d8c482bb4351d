package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Exactly-once stream consumption (exactly_once = true on a stream
// trigger; docs/events.md, "Delivery"). The trigger's consumer is a
// franz-go GroupTransactSession: each poll is one Kafka transaction that
// holds the outputs, emits, dead letters and replies of its events, their
// state changes (the changelog records) and the group's offsets for the
// poll. The transaction commits, or, when anything fails (a produce, a
// rebalance, the pool stopping in the middle of a retry), aborts: its
// records are then invisible to read_committed consumers, and the session
// goes back to the last committed offsets, so the poll is handled again.
//
// State changes of a transaction are kept aside (stateTxn), seen by the
// transaction's own later events, and applied to the pool's state only
// once the transaction committed; the changelog is read read_committed
// (stateStore.tail), so no pool ever applies an aborted change.
//
// Each trigger's transactional ID is its group plus the pool's instance
// ID (WithInstanceID, static.go): a pool restarted or replaced with the same instance ID fences
// its predecessor and aborts the transaction it left open at once;
// without one (a random ID), that transaction stays open until the
// transaction timeout, and read_committed consumers of the topics it
// wrote wait until then.

// txPoll bounds the records of a transaction: sixteen polls of an
// at-least-once consumer (pollBatch). A transaction cannot overlap the
// next as at-least-once polls do (its commit carries every offset the
// session has polled), so its fixed costs (the flush, the offsets added to
// it, its end) are spread over more events, and its records come from
// more partitions, which run side by side (txLanes); adapt makes it
// smaller for slow functions. A transaction ends when its lanes have
// nothing left (pollMore), so a larger bound adds no wait when records
// come slowly: under a backlog, its outputs reach read_committed
// consumers at its commit, a transaction of up to 4,096 events later
// (bench/NOTES.md, "Exactly once: larger transactions across
// partitions").
const txPoll = 16 * pollBatch

// txPollFor bounds how long a transaction takes more polls (pollMore):
// when records keep coming while its lanes run, they would otherwise
// keep it open, and its outputs unseen by read_committed consumers,
// until it reached txPoll records. Kafka Streams commits an exactly-once
// task's transaction every 100ms by default, the bound taken here; a
// transaction ends sooner when its lanes are idle.
const txPollFor = 100 * time.Millisecond

// txFetchPartitionBytes bounds what a fetch of an exactly-once consumer
// brings of each partition (franz-go's default is 1 MiB).
const txFetchPartitionBytes = 64 << 10

// transactor is an exactly-once consumer's transaction session.
type transactor struct {
	opts []kgo.Opt // the session's, for a new one (renew)
	sess *kgo.GroupTransactSession
	id   string // the transactional ID
	// timeout is the transaction timeout: the brokers abort a transaction
	// open longer.
	timeout time.Duration
	// poll is how many records a transaction takes (adapt).
	poll int
	// txn holds the state changes of the open transaction, for a function
	// with state.
	txn *stateTxn
}

// transactional makes c an exactly-once consumer: its client is a
// transaction session, reading read_committed, with opts.
func (c *consumer) transactional(opts []kgo.Opt) error {
	t := &transactor{id: c.p.transactionalID(c.tr), timeout: c.txTimeout(), poll: txPoll}
	if one := c.eventBound(); 2*one > t.timeout {
		c.f.log.Warn("an event may take longer than half the transaction timeout (its attempts, timeouts and backoffs): the brokers may abort its transaction, and it is then handled again", "stream", c.tr.Stream, "event", one, "transaction_timeout", t.timeout)
	}
	t.opts = append(opts,
		kgo.TransactionalID(t.id),
		kgo.TransactionTimeout(t.timeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Outputs go to the brokers as they come, while the later
		// events of the transaction run, not all at its end (Flush):
		// the flush before End then waits for the last of them only. A
		// transaction's steps run one after another, so its outputs
		// lingering (franz-go's 10ms default) would add their produce
		// to every transaction's time (bench/NOTES.md, "Exactly once:
		// outputs without linger").
		kgo.ProducerLinger(0),
		// A fetch brings up to 64 KiB of each partition, not 1 MiB:
		// a transaction's polls (pollMore) then take records of several
		// partitions, whose runs go to the function side by side
		// (txLanes), not thousands of records of the first partition
		// one batch after another. A batch over the bound comes whole
		// for the first partition with data only (Kafka's rule, so that
		// the consumer progresses), so a backlog's partitions whose
		// batches are larger come one per fetch (bench/NOTES.md,
		// "Exactly once: larger transactions across partitions").
		kgo.FetchMaxPartitionBytes(txFetchPartitionBytes),
	)
	sess, err := kgo.NewGroupTransactSession(t.opts...)
	if err != nil {
		return fmt.Errorf("function %s: stream %s: exactly_once: %w", c.f.cfg.Name, c.tr.Stream, err)
	}
	t.sess = sess
	c.cl = sess.Client()
	c.eos = t
	return nil
}

// transactionalID is the transactional ID of an exactly-once trigger's
// consumer in this pool: its group and the pool's instance ID.
func (p *Pool) transactionalID(tr StreamTrigger) string {
	if p.opts.instanceID != "" {
		return tr.Group + "." + p.opts.instanceID
	}
	p.randomIDOnce.Do(func() {
		var b [8]byte
		_, _ = rand.Read(b[:])
		p.randomID = hex.EncodeToString(b[:])
		p.opts.logger.Warn("this pool has no instance ID (butter pool -instance-id, $NOMAD_ALLOC_NAME): exactly-once triggers use a random one, so after a crash the transactions it left open are aborted only at their timeout", "instance", p.randomID)
	})
	return tr.Group + "." + p.randomID
}

// fence aborts the transactions a previous run of this pool (the same
// instance ID) left open, before the state is restored: the restore reads
// the changelog read_committed up to its end, so it would wait for them
// until their timeout. Initializing a producer with a transactional ID
// bumps its epoch, which fences the old producer and aborts its open
// transaction.
func (p *Pool) fence(ctx context.Context, base []kgo.Opt) error {
	for _, name := range p.Functions() {
		f := p.fns[name]
		for _, tr := range f.cfg.Streams {
			if !tr.ExactlyOnce {
				continue
			}
			c := &consumer{p: p, f: f, tr: tr}
			c.setRetry()
			id := p.transactionalID(tr)
			cl, err := kgo.NewClient(append(append([]kgo.Opt{}, base...), kgo.TransactionalID(id), kgo.TransactionTimeout(c.txTimeout()))...)
			if err != nil {
				return fmt.Errorf("function %s: stream %s: exactly_once: %w", name, tr.Stream, err)
			}
			_, _, err = cl.ProducerID(ctx)
			cl.Close()
			if err != nil {
				return fmt.Errorf("function %s: stream %s: exactly_once: initialize the transactional producer %s: %w", name, tr.Stream, id, err)
			}
		}
	}
	return nil
}

// eventBound is the longest one event can take: its attempts, each up to
// the function's timeout, and the backoffs between them.
func (c *consumer) eventBound() time.Duration {
	one := time.Duration(c.attempts) * c.f.timeout
	b := c.backoff
	for i := 1; i < c.attempts; i++ {
		one += b
		b = min(2*b, c.maxBack)
	}
	return one
}

// txTimeout is the transaction timeout of c's transactions: room for one
// event twice over (a transaction takes fewer events when they are slow:
// adapt), at least a minute, at most 15 minutes (Kafka's default
// transaction.max.timeout.ms).
func (c *consumer) txTimeout() time.Duration {
	return min(max(time.Minute, 2*c.eventBound()+10*time.Second), 15*time.Minute)
}

// adapt sizes the next transactions from how long the last one took: a
// transaction should stay well within its timeout.
func (t *transactor) adapt(took time.Duration) {
	switch {
	case took > t.timeout/4 && t.poll > 1:
		t.poll = max(1, t.poll/2)
	case took < t.timeout/16 && t.poll < txPoll:
		t.poll = min(txPoll, 2*t.poll)
	}
}

// runTransact is run for an exactly-once consumer: poll, handle the poll
// in one transaction, commit it with the poll's offsets, until ctx ends.
// Handling runs to its end even while stopping; an event whose retries
// stopping cut short aborts its transaction, so the whole poll is left to
// the partitions' next owner.
func (c *consumer) runTransact(ctx context.Context) {
	t := c.eos
	// Closing leaves the group: the rebalance it starts must be let in
	// (BlockRebalanceOnPoll).
	defer func() { t.sess.CloseAllowingRebalance() }()
	c.stop = ctx.Done()
	log := c.f.log.With("stream", c.tr.Stream, "group", c.tr.Group, "transactional_id", t.id)
	hctx := context.WithoutCancel(ctx)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		c.produceOutputs(hctx)
	}()
	defer func() {
		close(c.outq)
		<-produced
	}()
	for {
		// Nothing is in flight between transactions: rebalances may go.
		t.sess.AllowRebalance()
		fetches := t.sess.PollRecords(ctx, t.poll)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		var refused error
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, kerr.InvalidSessionTimeout) {
				refused = err
				return
			}
			log.Warn("fetch failed", "topic", topic, "partition", p, "error", err)
		})
		if refused != nil {
			log.Error(c.sessionRefused(ctx).Error()+"; this stream is not consumed until the pool restarts", "error", refused)
			return
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		if c.f.state != nil && c.resync.Swap(false) && !c.syncState(ctx) {
			return
		}
		start := time.Now()
		if err := c.transact(hctx, ctx, fetches, log); err != nil {
			// End's errors are not retryable: a new session.
			log.Error("transaction failed; the poll is handled again with a new transaction session", "error", err)
			if !c.renew(ctx, log) {
				return
			}
			continue
		}
		t.adapt(time.Since(start))
	}
}

// transact handles the fetches' records in one transaction and ends it:
// a commit when every record was handled and every output, emit, dead
// letter and state change acknowledged, an abort otherwise. While the
// records run, polls (until pollCtx ends, for txPollFor at most) add the
// records they bring to the transaction, up to its bound (t.poll), so
// that the partitions of later fetches run beside the first one's
// (txLanes). On a commit, the transaction's state changes are applied to
// the pool's state. An error is one of End's: the session cannot go on.
func (c *consumer) transact(ctx, pollCtx context.Context, fetches kgo.Fetches, log hclog.Logger) error {
	t := c.eos
	if err := t.sess.Begin(); err != nil {
		return fmt.Errorf("begin a transaction: %w", err)
	}
	if c.f.state != nil {
		t.txn = &stateTxn{s: c.f.state, cl: c.cl, pending: map[string]*kgo.Record{}}
	}
	acks := newBatchAcks()
	pctx, idle := context.WithTimeout(pollCtx, txPollFor)
	ls := &txLanes{c: c, ctx: ctx, acks: acks, idle: idle, parts: map[topicPartition]*txLane{}}
	n := ls.dispatch(fetches)
	if c.tr.Order != "key" {
		// A key's events may be in several lanes of a poll (lanes): a
		// later poll's could not be put after theirs.
		c.pollMore(pctx, ls, n, log)
	}
	ls.wg.Wait()
	idle()
	<-c.outputsDone()
	// Every record of the transaction is handed to the client: wait for
	// their acknowledgements, to decide.
	_ = c.cl.Flush(ctx)
	acks.wg.Wait()
	try := kgo.TryCommit
	switch {
	case ls.cut.Load():
		log.Info("stopping: retries of an event cut short; its transaction is aborted, and the poll left to the partitions' next owner")
		try = kgo.TryAbort
	case acks.err != nil:
		log.Warn("produce failed; the transaction is aborted and its events handled again", "records", len(acks.failed), "error", acks.err)
		try = kgo.TryAbort
	}
	ectx, cancel := context.WithTimeout(ctx, t.timeout)
	committed, err := t.sess.End(ectx, try)
	cancel()
	txn := t.txn
	t.txn = nil
	if committed && txn != nil {
		txn.commit()
	}
	if err == nil && !committed && try == kgo.TryCommit {
		log.Info("transaction aborted (the group rebalanced, or its offsets could not be committed); its events are handled again")
	}
	return err
}

// pollMore polls while the transaction's lanes run (until pctx ends: ls
// ends it when they are all idle, and it ends txPollFor after the
// transaction began), and gives them the records polled, up to t.poll
// records in the transaction with the n it has. Every record
// polled is handled in the transaction: End commits the offsets of all
// of them. A fetch's partitions and the next fetches' go to the lanes as
// they come, so that the function works on them side by side while the
// transaction fills (bench/NOTES.md, "Exactly once: larger transactions
// across partitions").
func (c *consumer) pollMore(pctx context.Context, ls *txLanes, n int, log hclog.Logger) {
	t := c.eos
	for n < t.poll && pctx.Err() == nil {
		fetches := t.sess.PollRecords(pctx, t.poll-n)
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed) {
				log.Warn("fetch failed", "topic", topic, "partition", p, "error", err)
			}
		})
		n += ls.dispatch(fetches)
		if fetches.IsClientClosed() {
			return
		}
	}
}

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int32
}

// txLanes runs a transaction's records: each partition's in a lane of its
// own, which handles them in the order they were polled, one run after
// another; the lanes run side by side. A run of order "key" (consumer.lanes
// splits a poll's records of a partition by key) has a lane of its own.
type txLanes struct {
	c    *consumer
	ctx  context.Context
	acks *batchAcks
	// idle is called whenever no lane is running.
	idle func()
	wg   sync.WaitGroup
	// cut is set when stopping cut an event's retries short: the
	// transaction aborts, and the lanes leave their other runs.
	cut atomic.Bool

	mu    sync.Mutex
	parts map[topicPartition]*txLane
	busy  int // lanes running
}

// txLane is a lane's runs not yet handled.
type txLane struct {
	runs    [][]*kgo.Record
	running bool
	// ran is set once the lane handled a run: the next one waits until
	// its outputs are produced (handleRun keeps the order of a run's
	// outputs only).
	ran bool
}

// dispatch gives the lanes the fetches' records, and returns how many.
func (ls *txLanes) dispatch(fetches kgo.Fetches) int {
	n := 0
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		ls.c.observeLag(ftp)
		if len(ftp.Records) == 0 {
			return
		}
		n += len(ftp.Records)
		if ls.c.tr.Order == "key" {
			for _, run := range ls.c.lanes(ftp.Records) {
				ls.add(&txLane{}, run)
			}
			return
		}
		tp := topicPartition{ftp.Topic, ftp.Partition}
		ls.mu.Lock()
		l := ls.parts[tp]
		if l == nil {
			l = &txLane{}
			ls.parts[tp] = l
		}
		ls.mu.Unlock()
		ls.add(l, ftp.Records)
	})
	return n
}

// add queues run in lane l, and starts the lane if it is not running.
func (ls *txLanes) add(l *txLane, run []*kgo.Record) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l.runs = append(l.runs, run)
	if l.running {
		return
	}
	l.running = true
	ls.busy++
	ls.wg.Add(1)
	go ls.work(l)
}

// work handles lane l's runs until it has none.
func (ls *txLanes) work(l *txLane) {
	defer ls.wg.Done()
	for {
		ls.mu.Lock()
		if len(l.runs) == 0 {
			l.running = false
			if ls.busy--; ls.busy == 0 {
				ls.idle()
			}
			ls.mu.Unlock()
			return
		}
		run := l.runs[0]
		l.runs = l.runs[1:]
		ran := l.ran
		l.ran = true
		ls.mu.Unlock()
		if ls.cut.Load() {
			continue
		}
		if ran {
			<-ls.c.outputsDone()
		}
		if ls.c.handleRun(ls.ctx, run, ls.acks) != nil {
			ls.cut.Store(true)
		}
	}
}

// renew replaces a session that failed with a new one, retrying every
// second until it can or ctx ends (false).
func (c *consumer) renew(ctx context.Context, log hclog.Logger) bool {
	t := c.eos
	t.sess.Close()
	for {
		if !c.pause(time.Second) {
			// run's deferred Close closes the failed session again,
			// which does nothing.
			return false
		}
		sess, err := kgo.NewGroupTransactSession(t.opts...)
		if err == nil {
			t.sess, c.cl = sess, sess.Client()
			return true
		}
		log.Error("cannot start a transaction session; retrying", "error", err)
	}
}

// stateTxn is the state changes of one transaction: written to the
// changelog in the transaction, read by the transaction's later events,
// applied to the store once the transaction committed (commit), dropped
// when it aborts.
type stateTxn struct {
	s  *stateStore
	cl *kgo.Client // the transaction's

	mu      sync.Mutex
	pending map[string]*kgo.Record // the latest change of each key
}

// get is stateStore.get, seeing the transaction's own changes.
func (t *stateTxn) get(key string) (value []byte, expired bool) {
	t.mu.Lock()
	r, ok := t.pending[key]
	t.mu.Unlock()
	if ok {
		return r.Value, false
	}
	return t.s.get(key)
}

// put writes a key's new state (nil deletes it) to the changelog in the
// transaction, and waits for its acknowledgement.
func (t *stateTxn) put(ctx context.Context, key string, value []byte) error {
	t.s.mu.Lock()
	topic, now := t.s.topic, t.s.now
	t.s.mu.Unlock()
	rec := &kgo.Record{Topic: topic, Key: []byte(key), Value: value, Timestamp: now()}
	if err := t.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("save the state of key %q in the transaction: %w", key, err)
	}
	t.mu.Lock()
	t.pending[key] = rec
	t.mu.Unlock()
	return nil
}

// commit applies the committed transaction's changes to the store.
func (t *stateTxn) commit() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for _, r := range t.pending {
		t.s.apply(r)
	}
}

// txn is the state changes of c's open transaction, nil when c is not
// exactly-once or its function has no state.
func (c *consumer) txn() *stateTxn {
	if c.eos == nil {
		return nil
	}
	return c.eos.txn
}
