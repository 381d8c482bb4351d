package pool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Stream consumption. Each stream trigger of each function runs its own
// consumer group, so every function bound to a stream sees every event,
// and the pools running one function share its partitions.
//
// Delivery is at least once. Records of a partition are handled in order,
// one at a time; partitions run in parallel. For a function without state
// whose worker speaks protocol 2 (docs/worker-protocol.md, "Batches"), a
// partition's consecutive records go to the worker in one frame, and it
// runs them one at a time, in order (handleBatch). Outputs (and dead
// letters and replies) are produced without waiting, in the order their
// records were handled, and a poll's offsets are committed only once
// every one of them is acknowledged by the brokers: a crash replays what
// was not committed, never loses it. Emits are acknowledged before the
// function's emit returns. Polls are bounded (pollBatch records), and at
// most maxBehind handled polls wait for their commit (run), so a slow
// function holds the fetch back instead of buffering without bound.
// Rebalances are blocked while polls are in flight (BlockRebalanceOnPoll):
// a revoked partition's work is finished and committed first.
const pollBatch = 256

// StartStreams starts the consumers of every stream trigger, through the
// Kafka cluster that kafka reaches. Stop stops them before the instances,
// so that in-flight events finish and are committed. It fails when the
// group coordinators refuse the pool's session timeout (WithSessionTimeout),
// naming their limits; where it cannot read them (an ACL refusing
// DescribeConfigs), a consumer refused at join stops and logs why (run).
func (p *Pool) StartStreams(ctx context.Context, kafka broker.Config) error {
	base, err := kafka.Opts()
	if err != nil {
		return err
	}
	// Create the topics the pool reads and writes that do not exist yet:
	// as their stream blocks declare them, or with defaults (3 partitions;
	// 1 for dead letters) for those no block declares.
	declared := map[string]broker.Topic{}
	for _, tc := range p.cfg.Topics {
		t := broker.Topic{Name: tc.Name, Partitions: tc.Partitions, Compact: tc.Compact}
		t.Retention = duration(tc.Retention)
		declared[tc.Name] = t
	}
	topic := func(name string, parts int) broker.Topic {
		if t, ok := declared[name]; ok {
			return t
		}
		return broker.Topic{Name: name, Partitions: parts}
	}
	var topics []broker.Topic
	var groups []string
	stateful := false
	for _, f := range p.fns {
		stateful = stateful || f.state != nil
		for _, tr := range f.cfg.Streams {
			topics = append(topics, topic(tr.Stream, 3), topic(deadLetterTopic(f.cfg, tr), 1))
			groups = append(groups, tr.Group)
		}
		if f.cfg.Output != "" {
			topics = append(topics, topic(f.cfg.Output, 3))
		}
		if f.cfg.Runtime == "source.postgres" {
			topics = append(topics, broker.Topic{Name: SourceCursorTopic(p.cfg.Project), Partitions: 1, Compact: true})
		}
	}
	// And every stream the project declares, as its block says: those its
	// functions may emit to (their emits lists) among them.
	for _, tc := range p.cfg.Topics {
		topics = append(topics, declared[tc.Name])
	}
	if err := p.calls.connect(ctx, kafka, base); err != nil {
		return err
	}
	if err := p.startLogs(base); err != nil {
		return fmt.Errorf("reach Kafka for the functions' logs: %w", err)
	}
	if len(topics) == 0 && !stateful && !p.emits() {
		return nil
	}
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("reach Kafka: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if err := p.checkSessionTimeout(ctx, adm, groups); err != nil {
		return err
	}
	if err := broker.EnsureTopics(ctx, adm, topics); err != nil {
		return err
	}
	// Transactions a previous run of this pool left open are aborted
	// first: the state restore would wait for them.
	if err := p.fence(ctx, base); err != nil {
		return err
	}
	// State first: a function's changelog is read to its end before its
	// streams are consumed.
	for _, name := range p.Functions() {
		f := p.fns[name]
		if f.state == nil {
			continue
		}
		topic := StateTopic(p.cfg.Project, name)
		if err := changelogTopic(ctx, adm, topic, f.state.ttl); err != nil {
			return err
		}
		if err := f.state.attach(ctx, base, topic); err != nil {
			return err
		}
	}
	// Emits from HTTP calls go through one producer of the pool's own.
	if p.producer, err = kgo.NewClient(append(append([]kgo.Opt(nil), base...), broker.ProducerOpts()...)...); err != nil {
		return fmt.Errorf("reach Kafka: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	p.streamCancel = cancel
	for _, f := range p.fns {
		for _, tr := range f.cfg.Streams {
			c, err := newConsumer(p, f, tr, base)
			if err != nil {
				cancel()
				p.streamWG.Wait()
				return err
			}
			p.streamWG.Add(1)
			go func() {
				defer p.streamWG.Done()
				c.run(sctx)
			}()
		}
	}
	return p.startSources(base) // sources.go
}

// checkSessionTimeout fails when the coordinator of one of the groups does
// not accept the pool's session timeout: its consumer would be refused at
// every join, and never consume. Limits it cannot read are not checked.
func (p *Pool) checkSessionTimeout(ctx context.Context, adm *kadm.Client, groups []string) error {
	if len(groups) == 0 {
		return nil
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	limits, err := broker.GroupSessionLimits(ctx, adm, groups...)
	if err != nil {
		p.opts.logger.Info("cannot read the group session timeouts the brokers accept; a consumer they refuse stops when it joins", "error", err)
		return nil
	}
	for _, g := range groups {
		if l, ok := limits[g]; ok && !l.Allows(p.opts.sessionTimeout) {
			return sessionRefused(g, p.opts.sessionTimeout, l.String())
		}
	}
	return nil
}

// sessionRefused is the error of a consumer group whose coordinator does
// not accept the session timeout d; accepts says what it accepts.
func sessionRefused(group string, d time.Duration, accepts string) error {
	return fmt.Errorf("consumer group %s: the broker refuses the session timeout %s (butter pool -session-timeout): it accepts %s; set a session timeout within its limits", group, d, accepts)
}

func deadLetterTopic(f FunctionConfig, tr StreamTrigger) string {
	if f.DeadLetter != "" {
		return f.DeadLetter
	}
	return names.DeadLetterTopic(tr.Stream)
}

func resetOffset(s string) (kgo.Offset, error) {
	o, err := spec.ParseOffset(s)
	if s == "" {
		o, err = spec.Offset{Kind: spec.OffsetLatest}, nil
	}
	if err != nil {
		return kgo.Offset{}, err
	}
	switch o.Kind {
	case spec.OffsetFirst:
		return kgo.NewOffset().AtStart(), nil
	case spec.OffsetAt:
		return kgo.NewOffset().At(o.At), nil
	case spec.OffsetTime:
		return kgo.NewOffset().AfterMilli(o.Time.UnixMilli()), nil
	}
	return kgo.NewOffset().AtEnd(), nil
}

type consumer struct {
	p        *Pool
	f        *fnPool
	tr       StreamTrigger
	cl       *kgo.Client
	dlq      string
	attempts int
	backoff  time.Duration
	maxBack  time.Duration
	// resync asks run to catch up with the state changelog before it
	// handles the next batch: partitions were assigned.
	resync atomic.Bool
	// leaveOpts connect a client to the brokers, for a static member's
	// explicit leave (closeClient).
	leaveOpts []kgo.Opt
	// perEvent is the time an event of a batch took lately, in
	// nanoseconds (handleBatch).
	perEvent atomic.Int64
	// source is the CloudEvent source of the function's outputs.
	source string
	// prefix is the project's topic prefix, "<project>.".
	prefix string
	// outq carries the outputs of batches to produce, in order, to the
	// goroutine that produces them (produceOutputs): the next batch can
	// go to the worker while they are produced.
	outq chan outWork
	// stop is closed when the consumer is asked to stop (run's context):
	// the waits between retries end then (pause).
	stop <-chan struct{}
	// eos is the transaction session of an exactly-once trigger
	// (transact.go), nil otherwise.
	eos *transactor
}

// outWork is the outputs of events to produce (outs[k] is recs[k]'s), or,
// with done set, a marker that produceOutputs closes once every output
// before it is produced.
type outWork struct {
	recs []*kgo.Record
	outs [][]byte
	// origins are the recs' (records.go).
	origins []*origin
	// emits holds each event's emit failure (emitFailure), if any.
	emits []*emitFailure
	acks  *batchAcks
	done  chan struct{}
}

// produceOutputs produces the queued outputs until outq is closed.
func (c *consumer) produceOutputs(ctx context.Context) {
	for w := range c.outq {
		if w.done != nil {
			close(w.done)
			continue
		}
		for k, r := range w.recs {
			// A batch's outputs are checked here, against the
			// output_schema too: they did not go through Invoke.
			err := w.emits[k].or(nil)
			if err == nil {
				if se := c.p.checkOutput(c.f, w.outs[k], true, true); se != nil {
					err = se
				}
			}
			ev := &event{r: r, id: w.origins[k].id, o: w.origins[k]}
			if err != nil {
				c.deadLetter(ctx, w.acks, ev, err, 1)
				continue
			}
			c.succeeded(ctx, w.acks, ev.o, w.outs[k])
		}
	}
}

// outputsDone returns a channel closed once every output queued so far is
// produced (handed to the client, not yet acknowledged).
func (c *consumer) outputsDone() chan struct{} {
	done := make(chan struct{})
	c.outq <- outWork{done: done}
	return done
}

func newConsumer(p *Pool, f *fnPool, tr StreamTrigger, base []kgo.Opt) (*consumer, error) {
	off, err := resetOffset(tr.Offset)
	if err != nil {
		return nil, fmt.Errorf("function %s: stream %s: %w", f.cfg.Name, tr.Stream, err)
	}
	opts := append(append([]kgo.Opt{}, base...), broker.ProducerOpts()...)
	c := &consumer{p: p, f: f, tr: tr, dlq: deadLetterTopic(f.cfg, tr), attempts: 1, backoff: time.Second,
		source: names.EventSource(p.cfg.Project, f.cfg.Name), prefix: p.cfg.Project + ".", outq: make(chan outWork, 64)}
	if f.state != nil {
		// Partitions another pool handled until now: its state writes
		// are read before their events (see run).
		opts = append(opts, kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			c.resync.Store(true)
		}))
	}
	forget := func(_ context.Context, _ *kgo.Client, gone map[string][]int32) { c.forgetLag(gone) }
	opts = append(opts,
		kgo.OnPartitionsRevoked(forget),
		kgo.OnPartitionsLost(forget),
		kgo.ConsumerGroup(tr.Group),
		kgo.ConsumeTopics(tr.Stream),
		kgo.ConsumeResetOffset(off),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(8<<20),
		// A crashed pool's partitions move to the survivors once its
		// session expires; Kafka's 45s default would stall them that long.
		kgo.SessionTimeout(p.opts.sessionTimeout),
	)
	c.setRetry()
	if tr.ExactlyOnce {
		if err := c.transactional(opts); err != nil {
			return nil, err
		}
		return c, nil
	}
	// At least once: a static member of the group (static.go). An
	// exactly-once consumer is not: a clean stop would not leave its group.
	opts = append(opts, p.staticOpts()...)
	c.leaveOpts = base
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("function %s: stream %s: %w", f.cfg.Name, tr.Stream, err)
	}
	c.cl = cl
	return c, nil
}

// setRetry sets c's attempts and backoffs from its function's retry
// block.
func (c *consumer) setRetry() {
	c.attempts, c.backoff = 1, time.Second
	if r := c.f.cfg.Retry; r != nil {
		c.attempts = max(r.Attempts, 1)
		if r.Backoff != "" { // else the default above
			c.backoff = duration(r.Backoff)
		}
		if r.MaxBackoff != "" {
			c.maxBack = duration(r.MaxBackoff)
		}
	}
	if c.maxBack < c.backoff {
		c.maxBack = 32 * c.backoff
	}
}

// run polls, handles and commits until ctx ends; then it leaves the group.
//
// For a function without state, a poll's batch is settled and committed
// (committer: settle, then its records' offsets) while the next polls'
// batches are handled, at most maxBehind of them: they overlap, and
// commits stay in poll order. Rebalances
// are allowed only once nothing is in flight: before a poll that would
// wait (nothing is buffered), and at least every allowEvery, when run
// waits for the batch in flight first. A stateful function's batches go
// one at a time: its changelog must be caught up (syncState) with
// nothing in flight.
//
// Stopping cuts short the waits between retries (pause): an event whose
// attempts are cut short is neither dead-lettered nor committed, nor is
// anything after it in its partition, so the partition's next owner
// handles it again from its first attempt. A drain thus never waits out a
// backoff (each up to retry.max_backoff, 32 × retry.backoff by default).
func (c *consumer) run(ctx context.Context) {
	if c.eos != nil {
		c.runTransact(ctx)
		return
	}
	defer c.closeClient()
	c.stop = ctx.Done()
	log := c.f.log.With("stream", c.tr.Stream, "group", c.tr.Group)
	// Handling runs to its end even while stopping: a poll's offsets are
	// committed, so nothing is handled twice after a clean drain.
	hctx := context.WithoutCancel(ctx)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		c.produceOutputs(hctx)
	}()
	commits := make(chan *pollCommit, maxBehind)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		c.committer(hctx, commits, log)
	}()
	defer func() {
		close(commits)
		<-committed
		close(c.outq)
		<-produced
	}()
	// last is the newest poll sent to the committer and not yet seen
	// committed.
	var last *pollCommit
	drain := func() {
		if last != nil {
			<-last.done
			last = nil
		}
		c.cl.AllowRebalance()
	}
	defer drain()
	lastAllowed := time.Now()
	for {
		if last != nil && (c.cl.BufferedFetchRecords() == 0 || time.Since(lastAllowed) > allowEvery) {
			drain()
			lastAllowed = time.Now()
		}
		fetches := c.cl.PollRecords(ctx, pollBatch)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		var refused error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, kerr.InvalidSessionTimeout) {
				refused = err
				return
			}
			log.Warn("fetch failed", "topic", t, "partition", p, "error", err)
		})
		if refused != nil {
			// Refused at join: every later join is refused too.
			log.Error(c.sessionRefused(ctx).Error()+"; this stream is not consumed until the pool restarts", "error", refused)
			return
		}
		if c.f.state != nil && c.resync.Swap(false) && !c.syncState(ctx) {
			// Stopping before the state could be read: the batch is
			// left uncommitted, for the partitions' next owner.
			return
		}
		var wg sync.WaitGroup
		pc := &pollCommit{acks: newBatchAcks(), done: make(chan struct{})}
		var parts []*polled
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			c.observeLag(ftp)
			part := &polled{recs: ftp.Records}
			parts = append(parts, part)
			for _, run := range c.lanes(ftp.Records) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r := c.handleRun(hctx, run, pc.acks); r != nil {
						part.cutAt(r)
					}
				}()
			}
		})
		wg.Wait()
		for _, part := range parts {
			if r := part.last(); r != nil {
				pc.last = append(pc.last, r)
			}
		}
		// The committer takes the polls in order, each once its outputs
		// are produced; sending waits while maxBehind polls wait for it.
		pc.outputs = c.outputsDone()
		commits <- pc
		last = pc
		if c.f.state != nil {
			drain()
		}
	}
}

// polled is a partition's records of a poll. When stopping cut an event's
// attempts short (cutAt), the partition's offset is committed only up to
// the record before it (last), so that its next owner handles it.
type polled struct {
	recs []*kgo.Record
	mu   sync.Mutex
	cut  *kgo.Record // the first record left unhandled, if any
}

// cutAt notes that r was left unhandled.
func (p *polled) cutAt(r *kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == nil || r.Offset < p.cut.Offset {
		p.cut = r
	}
}

// last is the record whose offset is committed for the partition: the
// last handled before any left unhandled, or nil for none.
func (p *polled) last() *kgo.Record {
	if p.cut == nil {
		return p.recs[len(p.recs)-1]
	}
	var last *kgo.Record
	for _, r := range p.recs {
		if r.Offset >= p.cut.Offset {
			break
		}
		last = r
	}
	return last
}

// sessionRefused is the error of a consumer refused at join for its
// session timeout, with the coordinator's limits if they can be read.
func (c *consumer) sessionRefused(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	accepts := "only what its group.min.session.timeout.ms and group.max.session.timeout.ms allow"
	limits, err := broker.GroupSessionLimits(ctx, kadm.NewClient(c.cl), c.tr.Group)
	if l, ok := limits[c.tr.Group]; ok {
		accepts = l.String()
	} else if err != nil {
		accepts += fmt.Sprintf(" (not readable here: %v)", err)
	}
	return sessionRefused(c.tr.Group, c.p.opts.sessionTimeout, accepts)
}

// pollCommit is a handled poll waiting for its commit: its outputs,
// queued until outputs is closed, then acknowledged (acks), then its
// records' offsets (last: each partition's last record) committed; done
// is closed then.
type pollCommit struct {
	outputs chan struct{}
	acks    *batchAcks
	last    []*kgo.Record
	done    chan struct{}
}

// committer commits the polls it is sent, in order. When more are
// waiting than one at a time keeps up with, those whose outputs are
// produced are acknowledged together and committed in one request:
// commits are cumulative, so the newest offsets cover the older. Once a
// poll's outputs could not be settled (the consumer is stopping), neither
// it nor any poll after it is committed.
func (c *consumer) committer(ctx context.Context, in <-chan *pollCommit, log hclog.Logger) {
	unsettled := false
	for pc := range in {
		<-pc.outputs
		polls := []*pollCommit{pc}
	more:
		for {
			select {
			case next, ok := <-in:
				if !ok {
					break more
				}
				<-next.outputs
				polls = append(polls, next)
			default:
				break more
			}
		}
		var recs []*kgo.Record
		acks := make([]*batchAcks, len(polls))
		for k, p := range polls {
			acks[k] = p.acks
			recs = append(recs, p.last...)
		}
		if !unsettled && !c.settle(ctx, acks...) {
			unsettled = true
			log.Warn("stopping with outputs not acknowledged: their events are left uncommitted, for the partitions' next owner")
		}
		if !unsettled {
			if err := c.cl.CommitRecords(ctx, recs...); err != nil {
				log.Error("commit failed; the batch will be handled again", "error", err)
			}
		}
		for _, p := range polls {
			close(p.done)
		}
	}
}

// allowEvery bounds how long a consumer that is never idle holds
// rebalances back, and maxBehind how many polls wait for their commit
// while the next is handled (run).
const (
	allowEvery = 100 * time.Millisecond
	maxBehind  = 4
)

// syncState reads the state changelog up to its current end, so that the
// state the previous owner of newly assigned partitions wrote before it
// committed is seen. It retries until it succeeds, since handling the
// events with an older state would be wrong, or until ctx ends: then it
// reports false.
func (c *consumer) syncState(ctx context.Context) bool {
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.f.state.sync(sctx)
		cancel()
		if err == nil {
			return true
		}
		c.f.log.Warn("could not catch up with the state changelog; retrying", "error", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// event is a record about to be handled.
type event struct {
	r        *kgo.Record
	id       string
	meta     map[string]string
	deadline time.Time // a request's caller's deadline, or zero
	// o is what the call's records derive from (records.go).
	o *origin
}

// event prepares r; it reports false for a request whose caller gave up
// before it was read, which is skipped.
func (c *consumer) event(r *kgo.Record) (*event, bool) {
	deadline, ok := c.live(r)
	if !ok {
		return nil, false
	}
	ev := &event{r: r, id: eventID(r), meta: make(map[string]string, len(r.Headers)+extraPairs), deadline: deadline}
	for _, h := range r.Headers {
		ev.meta[h.Key] = string(h.Value)
	}
	ev.o = c.origin(r, ev.id)
	var pos [64]byte
	extra, n := ev.o.eventMeta(pos[:])
	for _, kv := range extra[:n] {
		ev.meta[kv.key] = kv.value()
	}
	return ev, true
}

// live reads a request's deadline, and reports false for one whose caller
// gave up before it was read, which is skipped. A request carries its
// caller's deadline; past it, retrying is pointless: the caller has given
// up. The call itself still runs to the function's own timeout, and its
// late reply is the caller's to drop.
func (c *consumer) live(r *kgo.Record) (deadline time.Time, ok bool) {
	if d := broker.Header(r, broker.HeaderDeadline); d != "" {
		deadline, _ = time.Parse(time.RFC3339Nano, d)
	}
	if !deadline.IsZero() && time.Now().After(deadline) {
		c.f.log.Debug("request past its deadline skipped", "id", eventID(r), "deadline", deadline)
		return deadline, false
	}
	return deadline, true
}

// eventID is a record's CloudEvent id, or its place in its topic.
func eventID(r *kgo.Record) string {
	if id := broker.Header(r, broker.HeaderID); id != "" {
		return id
	}
	return r.Topic + "-" + strconv.Itoa(int(r.Partition)) + "-" + strconv.FormatInt(r.Offset, 10)
}

// handle runs one event through the function with retries, then produces
// its output, or its dead letter, into acks: it returns without waiting
// for the acknowledgement. It reports false when stopping cut the
// event's attempts short (attempts1).
func (c *consumer) handle(ctx context.Context, r *kgo.Record, acks *batchAcks) bool {
	if ev, ok := c.event(r); ok {
		if err := expired(r); err != nil {
			// Not run: its ce_ttl ran out (or is not a duration).
			c.deadLetter(ctx, acks, ev, err, 0)
			return true
		}
		return c.attempts1(ctx, ev, acks, nil)
	}
	return true
}

// attempts1 is handle's work on a prepared event. firstErr, when not nil,
// is the failure of the event's first attempt, made in a batch
// (handleBatch): the attempts go on from the second. It reports false,
// having produced nothing, when the consumer was stopped while it waited
// to retry: the event is left for the partition's next owner.
func (c *consumer) attempts1(ctx context.Context, ev *event, acks *batchAcks, firstErr error) bool {
	r := ev.r
	var lastErr error
	backoff := c.backoff
	attempt := 1
	for ; attempt <= c.attempts; attempt++ {
		var err error
		if attempt == 1 && firstErr != nil {
			err = firstErr
		} else {
			out := new(bytes.Buffer)
			ef := &emitFailure{}
			err = ef.or(c.p.Invoke(ev.o.spanCtx(ctx), c.f.cfg.Name, &Call{
				Input: bytes.NewReader(r.Value), Output: out, Meta: ev.meta,
				Calls: c.calls(ev.o, ef), StateKey: string(r.Key), stream: r.Topic, txn: c.txn(),
			}))
			if err == nil {
				if se := c.p.checkOutput(c.f, out.Bytes(), false, true); se != nil {
					err = se
				}
			}
			if err == nil {
				c.succeeded(ctx, acks, ev.o, out.Bytes())
				return true
			}
		}
		lastErr = err
		if !ev.deadline.IsZero() && time.Now().After(ev.deadline) {
			break
		}
		if !retried(err) {
			break
		}
		if attempt < c.attempts {
			if !c.pause(backoff) {
				c.f.log.Info("stopping: retries of an event cut short; it is left uncommitted", "id", ev.id, "attempts", attempt, "error", err)
				return false
			}
			backoff = min(2*backoff, c.maxBack)
		}
	}
	c.deadLetter(ctx, acks, ev, lastErr, min(attempt, c.attempts))
	return true
}

// retried reports whether a failure of an event's call is worth another
// attempt: not a PreconditionFailed (the input is wrong, and stays so)
// nor a PostconditionFailed (the function's output or emit is wrong: a
// retry runs its effects again for a wrong output again)
// (docs/events.md, "Error types").
func retried(err error) bool {
	var se *SchemaError
	if errors.As(err, &se) {
		return false
	}
	var pe *proto.Error
	if errors.As(err, &pe) && (pe.Type == proto.PreconditionFailed || pe.Type == proto.PostconditionFailed) {
		return false
	}
	return true
}

// deadLetter produces the dead letter of event ev, which failed with err
// after attempts attempts, and the reply of a queued route's request.
func (c *consumer) deadLetter(ctx context.Context, acks *batchAcks, ev *event, err error, attempts int) {
	r := ev.r
	// The dead letter, for operators, keeps the whole message and its
	// detail (a traceback); a reply, for the caller of a queued route,
	// carries the short message only (errors.go).
	f := failureOf(c.f.cfg.Name, err)
	typ := f.Type
	dl := &kgo.Record{Topic: c.dlq, Key: r.Key, Value: r.Value, Headers: append([]kgo.RecordHeader(nil), r.Headers...)}
	broker.SetHeader(dl, broker.HeaderErrorType, typ)
	broker.SetHeader(dl, broker.HeaderErrorMessage, f.deadLetter())
	broker.SetHeader(dl, broker.HeaderErrorFunction, c.f.cfg.Name)
	if len(f.Violations) > 0 {
		broker.SetHeader(dl, broker.HeaderErrorDetails, violationsJSON(f.Violations))
	}
	broker.SetHeader(dl, broker.HeaderAttempts, strconv.Itoa(attempts))
	broker.SetHeader(dl, broker.HeaderOrigin, r.Topic+"/"+strconv.Itoa(int(r.Partition))+"/"+strconv.FormatInt(r.Offset, 10))
	if broker.Header(dl, broker.HeaderID) == "" {
		broker.SetHeader(dl, broker.HeaderID, ev.id)
	}
	if ev.o == nil {
		ev.o = c.origin(r, ev.id)
	}
	// The input's own headers stay (its ce_time, ce_ttl, ce_traceparent);
	// what it lacks is added, and where it was.
	ev.o.decorate(dl)
	args := []any{"topic", c.dlq, "id", ev.id, "type", typ, "attempts", attempts, "error", f.Full}
	if f.Detail != "" && !c.p.stderrLogged(c.f.cfg.Name) {
		args = append(args, "detail", f.Detail)
	}
	c.f.log.Warn("event sent to the dead-letter topic", args...)
	c.p.opts.metrics.deadLetters.WithLabelValues(c.f.cfg.Name, typ).Inc()
	recs := []*kgo.Record{dl}
	if reply := broker.Reply(r, nil, typ, f.Message); reply != nil {
		ev.o.decorate(reply)
		recs = append(recs, reply)
	}
	c.produce(ctx, acks, recs...)
	ev.o.endSpan(err)
}

// pause waits d, and reports false at once if the consumer is stopped
// first.
func (c *consumer) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

// succeeded produces the outputs and reply of the call on event o.input,
// whose output is out: no record for no output, one per output of
// several (records.go), each with its own id.
func (c *consumer) succeeded(ctx context.Context, acks *batchAcks, o *origin, out []byte) {
	// Emits were produced while the call ran; the outputs join them.
	if c.f.cfg.Output != "" && len(out) > 0 && !isEnvelope(out) {
		c.produce(ctx, acks, o.record(c.f.cfg.Output, o.key, out, "output", 0))
	} else if c.f.cfg.Output != "" {
		outs, _ := outputs(out) // checked already (checkOutput)
		for _, x := range outs {
			key := x.key
			if key == nil {
				key = o.key
			}
			c.produce(ctx, acks, o.record(c.f.cfg.Output, key, x.value, "output", x.index))
		}
	}
	if reply := broker.Reply(o.input, out, "", ""); reply != nil {
		o.decorate(reply)
		c.produce(ctx, acks, reply)
	}
	o.endSpan(nil)
}

// maxBatch bounds the events of a batch, and maxBatchBytes its size.
const (
	maxBatch      = pollBatch
	maxBatchBytes = 1 << 20
)

// handleRun handles a run of a partition's records (see lanes: the
// partition's, or one key's) in order. For a function without state,
// consecutive records of the run go to one worker as a batch
// (handleBatch) when its runtime offers that; otherwise, and for retries,
// one at a time. Runs of different keys go side by side, each its own
// batches, so a key's events stay in order. When
// stopping cuts a record's attempts short, it returns that record, having
// left it and the rest of the run unhandled; else nil.
func (c *consumer) handleRun(ctx context.Context, recs []*kgo.Record, acks *batchAcks) *kgo.Record {
	// A function with an execution log runs its events one at a time:
	// a batch's events do not go through Invoke, which records them.
	batchable := c.f.state == nil && c.f.exec == nil
	queued := false // outputs of this run wait in outq
	for len(recs) > 0 {
		if n := min(len(recs), c.batchSize()); batchable && n > 1 && !c.f.noBatches.Load() {
			done, cut := c.handleBatch(ctx, recs[:n], acks)
			if cut != nil {
				return cut
			}
			if done > 0 {
				recs = recs[done:]
				queued = true
				continue
			}
		}
		if queued {
			// This event's output must come after theirs.
			<-c.outputsDone()
			queued = false
		}
		start := time.Now()
		if !c.handle(ctx, recs[0], acks) {
			return recs[0]
		}
		if batchable {
			c.measure(time.Since(start))
		}
		recs = recs[1:]
	}
	return nil
}

// batchSize is the size of the next batch: as many events as the
// function handled, lately, in an eighth of its timeout (each event of a
// batch has the batch's deadline), between 1 and maxBatch. The first
// event is handled alone, to measure it.
func (c *consumer) batchSize() int {
	per := time.Duration(c.perEvent.Load())
	if per <= 0 {
		return 1
	}
	return int(max(1, min(int64(maxBatch), int64(c.f.timeout/8/per))))
}

// handleBatch runs the first records of recs through the function as one
// batch, and handles each event's outcome in order, as handle does: an
// output, as its result comes, or (the first failure) the retries from
// the second attempt on.
// The events after a failure were not run, and are handled one at a time
// (handle). A worker that dies in a batch loses the results it had not
// written yet: the first event without one is handled again from its
// first attempt, so the event that killed the worker runs once more than
// its attempts. It returns how many records it handled: 0, having run
// nothing, when the function's instance cannot run batches or the first
// record cannot go in one. When stopping cuts a record's attempts short,
// it returns that record too, the records after it left unhandled.
func (c *consumer) handleBatch(ctx context.Context, recs []*kgo.Record, acks *batchAcks) (int, *kgo.Record) {
	size := 0
	for _, r := range recs {
		// The pool's own pairs too (origin.eventMeta).
		size += len(r.Value) + 8 + 200 + len(r.Key)
		for _, h := range r.Headers {
			size += len(h.Key) + len(h.Value) + 6
		}
	}
	events := runtime.BatchEvents(min(size, maxBatchBytes))
	kept := make([]*kgo.Record, 0, len(recs))
	origins := make([]*origin, 0, len(recs))
	// The origins are allocated at once, not one by one.
	originsOf := make([]origin, len(recs))
	n := 0 // records taken: kept, or skipped as past their deadline
	for _, r := range recs {
		if !batchable(r) || (n > 0 && len(events)-runtime.BatchHeadroom+len(r.Value) > maxBatchBytes) {
			break
		}
		if expired(r) != nil {
			// Dead-lettered, not run: handle does it, after the events
			// before it.
			break
		}
		if c.p.checksInput(c.f, r.Topic) && c.p.checkInput(c.f, &Call{Input: bytes.NewReader(r.Value), stream: r.Topic}) != nil {
			// An input that fails its schema is not run: handle
			// dead-letters it, after the events before it.
			break
		}
		n++
		if _, ok := c.live(r); !ok {
			continue
		}
		o := &originsOf[len(origins)]
		c.setOrigin(o, r, eventID(r))
		// The pool's metadata after the headers: a worker keeps the last
		// of a name, so it overrides a header of the same name.
		head := len(events)
		events = proto.AppendEventHead(events, 0)
		for _, h := range r.Headers {
			events = proto.AppendPair(events, h.Key, h.Value)
		}
		var pos [64]byte // its position (origin.eventMeta)
		extra, n := o.eventMeta(pos[:])
		for _, kv := range extra[:n] {
			events = kv.appendTo(events)
		}
		binary.BigEndian.PutUint16(events[head:], uint16(len(r.Headers)+n)) // AppendEventHead's
		events = proto.AppendInput(events, r.Value)
		kept = append(kept, r)
		origins = append(origins, o)
	}
	if len(kept) == 0 {
		return n, nil
	}
	efs := make([]*emitFailure, len(kept))
	efsOf := make([]emitFailure, len(kept))
	for k := range efs {
		efs[k] = &efsOf[k]
	}
	b := &runtime.Batch{Count: len(kept), Events: events, Reserved: true,
		Calls: func(ctx context.Context, index int, call proto.CallMsg) proto.ReplyMsg {
			return c.call(ctx, origins[index], call, efs[index])
		},
		// Outputs go out as their results come, while later events run,
		// and while the next batch runs.
		OK: func(first int, outs [][]byte) {
			c.outq <- outWork{recs: kept[first : first+len(outs)], outs: outs, origins: origins[first : first+len(outs)], emits: efs[first : first+len(outs)], acks: acks}
		},
	}
	start := time.Now()
	res, ok := c.f.invokeBatch(ctx, b)
	if !ok {
		return 0, nil
	}
	ran := 0
	for _, r := range res {
		if !skipped(r.Err) {
			ran++
		}
	}
	if ran > 0 {
		c.measure(time.Since(start) / time.Duration(ran))
	}
	failed := false
	for k, r := range kept {
		if err := res[k].Err; err != nil && !failed {
			// The outputs before the failure go first.
			<-c.outputsDone()
		}
		switch err := res[k].Err; {
		case err == nil && !failed:
			// Its output went out (OK).
		case failed || skipped(err):
			failed = true
			origins[k].endSpan(err) // handled again, in a span of its own
			if !c.handle(ctx, r, acks) {
				return n, r
			}
		default:
			failed = true
			origins[k].endSpan(err)
			ev, ok := c.event(r)
			if !ok {
				continue
			}
			var pe *proto.Error
			if !errors.As(err, &pe) {
				// The worker died, maybe in an event after this one
				// whose result it had not written yet: the failure
				// cannot be pinned on this event, so it does not count
				// as one of its attempts.
				if !c.attempts1(ctx, ev, acks, nil) {
					return n, r
				}
				continue
			}
			if !c.attempts1(ctx, ev, acks, err) {
				return n, r
			}
		}
	}
	return n, nil
}

// appendPairString is proto.AppendPair for a string value.
func appendPairString(dst []byte, key, value string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// batchable reports whether a record fits the batch encoding
// (proto.AppendPair's limits).
func batchable(r *kgo.Record) bool {
	if len(r.Headers)+extraPairs > proto.MaxPairs {
		return false
	}
	for _, h := range r.Headers {
		if len(h.Key) > proto.MaxPairKey {
			return false
		}
	}
	return true
}

// measure folds a batch's time per event into the running average.
func (c *consumer) measure(per time.Duration) {
	old := time.Duration(c.perEvent.Load())
	if old > 0 {
		per = (3*old + per) / 4
	}
	c.perEvent.Store(int64(max(per, 1)))
}

// batchAcks tracks the records a batch produced without waiting: the
// batch's offsets are committed once all are acknowledged (settle).
type batchAcks struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	failed []*kgo.Record
	err    error // the first failure
	// promise is acked, made once (newBatchAcks) rather than a closure
	// per record produced.
	promise func(*kgo.Record, error)
}

func newBatchAcks() *batchAcks {
	a := &batchAcks{}
	a.promise = a.acked
	return a
}

// acked is the promise of a record produced: it counts the record done,
// and keeps it when it failed.
func (a *batchAcks) acked(r *kgo.Record, err error) {
	if err != nil {
		a.mu.Lock()
		a.failed = append(a.failed, r)
		if a.err == nil {
			a.err = fmt.Errorf("produce to %s: %w", r.Topic, err)
		}
		a.mu.Unlock()
	}
	a.wg.Done()
}

// produce writes records without waiting for their acknowledgement, which
// acks tracks. The client keeps the order of the records of a partition,
// so outputs keep the order their events were handled in.
func (c *consumer) produce(ctx context.Context, acks *batchAcks, recs ...*kgo.Record) {
	promise := acks.promise
	if promise == nil {
		promise = acks.acked
	}
	for _, r := range recs {
		acks.wg.Add(1)
		c.cl.Produce(ctx, r, promise)
	}
}

// settle waits until every record of the batches is acknowledged,
// producing again those that failed (in the order they failed) until they
// are: an event is never committed before its output is safe. Only a
// record that failed, which the client does not do for errors it can
// retry, may land after a record handled later. It reports false when
// the consumer was stopped before the failed records could be produced
// again (produceSync): the batches must not be committed.
func (c *consumer) settle(ctx context.Context, batches ...*batchAcks) bool {
	// The batches are handled: send what lingers (10ms by default) at
	// once. Flush also waits for the records, which the callbacks then
	// count.
	_ = c.cl.Flush(ctx)
	for _, acks := range batches {
		acks.wg.Wait()
		if len(acks.failed) > 0 {
			c.f.log.Warn("produce failed; retrying", "records", len(acks.failed), "error", acks.err)
			if !c.produceSync(ctx, acks.failed) {
				return false
			}
		}
	}
	return true
}

// produceSync writes records and waits for their acknowledgement, retrying
// until they are acknowledged; it reports false if the consumer is
// stopped while it waits to retry.
func (c *consumer) produceSync(ctx context.Context, recs []*kgo.Record) bool {
	for len(recs) > 0 {
		res := c.cl.ProduceSync(ctx, recs...)
		var failed []*kgo.Record
		for _, pr := range res {
			if pr.Err != nil {
				c.f.log.Warn("produce failed; retrying", "topic", pr.Record.Topic, "error", pr.Err)
				failed = append(failed, pr.Record)
			}
		}
		recs = failed
		if len(recs) > 0 && !c.pause(250*time.Millisecond) {
			return false
		}
	}
	return true
}

// calls answers the context calls of a call handling in (call).
func (c *consumer) calls(o *origin, ef *emitFailure) runtime.CallHandler {
	return func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg { return c.call(ctx, o, call, ef) }
}

// call answers a worker's context call made while it handles o.input: an
// emit to a stream the function may emit to (emitTopic) is produced, and
// acknowledged before the reply; one to any other stream is refused.
func (c *consumer) call(ctx context.Context, o *origin, call proto.CallMsg, ef *emitFailure) proto.ReplyMsg {
	switch call.Op {
	case "emit":
		k := ef.emitIndex(call)
		topic, refused := c.p.emitTopic(c.f.cfg, call.Stream)
		if refused != "" {
			return proto.ReplyMsg{Error: refused}
		}
		if se := c.p.checkEmit(topic, call.Value); se != nil {
			// Not produced; the call fails with it (emitFailure).
			ef.set(se)
			return proto.ReplyMsg{Error: proto.PostconditionFailed + ": " + se.Error()}
		}
		key := []byte(call.Key)
		if call.Key == "" {
			key = o.key
		}
		rec := o.record(topic, key, call.Value, "emit", k)
		if err := c.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return proto.ReplyMsg{Error: err.Error()}
		}
		return proto.ReplyMsg{OK: true}
	case "log":
		c.p.shipCall(c.f.cfg.Name, o, call.Level, call.Message)
		return functionLog(c.f.log, call)
	}
	return proto.ReplyMsg{Error: "unsupported op"}
}

// emits is true when a function of the pool may emit from an HTTP call:
// one with an output or an emits list (emitTopic), so that the pool
// connects to Kafka for it.
func (p *Pool) emits() bool {
	for _, f := range p.fns {
		if f.cfg.Output != "" || len(f.cfg.Emits) > 0 {
			return true
		}
	}
	return false
}

// emitTopic is the topic of function f's emit to stream, or, when f may not
// emit there, the "unknown stream" error its worker gets
// (docs/worker-protocol.md, "Context calls"). A function emits only to its
// output and to the streams of its emits list. Internal topics (state
// changelogs, ticks, requests) are never one of them: they are not
// streams, and Config.Check refuses an emits entry that is not a stream's
// topic.
func (p *Pool) emitTopic(f FunctionConfig, stream string) (topic, refused string) {
	topic = names.Topic(p.cfg.Project, stream)
	allowed := make([]string, 0, len(f.Emits)+1)
	for _, t := range append([]string{f.Output}, f.Emits...) {
		if t == "" {
			continue
		}
		if t == topic {
			return topic, ""
		}
		allowed = append(allowed, strings.TrimPrefix(t, p.cfg.Project+"."))
	}
	if len(allowed) == 0 {
		return "", fmt.Sprintf("unknown stream %q: function %s may emit to no stream: its spec has neither an output nor an emits list", stream, f.Name)
	}
	slices.Sort(allowed)
	return "", fmt.Sprintf("unknown stream %q: function %s may emit only to its output and emits streams: %s", stream, f.Name, strings.Join(slices.Compact(allowed), ", "))
}

// httpCalls answers the emit and log calls of an HTTP-triggered call:
// an emit to a stream the function may emit to (emitTopic) is produced,
// keyed as the function says, and acknowledged before the function's emit
// returns; one to any other stream is refused, and nothing is produced.
func (p *Pool) httpCalls(f *fnPool, o *origin, ef *emitFailure) runtime.CallHandler {
	return func(ctx context.Context, call proto.CallMsg) proto.ReplyMsg {
		switch call.Op {
		case "emit":
			k := ef.emitIndex(call)
			topic, refused := p.emitTopic(f.cfg, call.Stream)
			if refused != "" {
				return proto.ReplyMsg{Error: refused}
			}
			if se := p.checkEmit(topic, call.Value); se != nil {
				// Not produced; the call fails with it (emitFailure).
				ef.set(se)
				return proto.ReplyMsg{Error: proto.PostconditionFailed + ": " + se.Error()}
			}
			em := p.emitter()
			if em == nil {
				return proto.ReplyMsg{Error: "this pool has no Kafka to emit to: run it with -kafka-brokers, $BUTTER_KAFKA_BROKERS or a kafka block in the project"}
			}
			rec := o.record(topic, []byte(call.Key), call.Value, "emit", k)
			if err := em.Emit(ctx, f.cfg.Name, rec); err != nil {
				return proto.ReplyMsg{Error: fmt.Sprintf("emit to %s: %v", rec.Topic, err)}
			}
			return proto.ReplyMsg{OK: true}
		case "log":
			p.shipCall(f.cfg.Name, o, call.Level, call.Message)
			return functionLog(f.log, call)
		}
		return proto.ReplyMsg{Error: "unsupported op " + call.Op}
	}
}

// lanes splits a partition's records into runs that may go in parallel:
// one run (the partition in order) by default, or one run per group of
// keys, each key in order, when the trigger's order is "key". Parallel
// runs are bounded by the function's capacity (max instances ×
// concurrency) through the pool's own admission.
//
// With order "key", keys are spread over as many lanes as the poll's work
// needs (keyLanes): a key's records always share one lane, in order, and
// a lane's records go to a worker in batches, so that a poll of many keys
// of a fast function does not become as many batches of a few events,
// while a slow function's keys still run side by side. A key waits for
// the failed events of another key of its lane (their retries), as a
// partition's records do in partition order.
func (c *consumer) lanes(recs []*kgo.Record) [][]*kgo.Record {
	if c.tr.Order != "key" {
		return [][]*kgo.Record{recs}
	}
	n := c.keyLanes(len(recs))
	idx := map[string]int{}
	lane := map[int]int{} // key group -> lane
	var out [][]*kgo.Record
	for _, r := range recs {
		i, ok := idx[string(r.Key)]
		if !ok {
			g := int(fnv32(r.Key) % uint32(n))
			if i, ok = lane[g]; !ok {
				i = len(out)
				lane[g] = i
				out = append(out, nil)
			}
			idx[string(r.Key)] = i
		}
		out[i] = append(out[i], r)
	}
	return out
}

// laneWork is the work a lane of order "key" is given from a poll: a
// poll's records are spread over enough lanes that each takes about this
// long (keyLanes).
const laneWork = 5 * time.Millisecond

// keyLanes is how many lanes a poll of n records of order "key" gets: n
// times the time an event took lately, over laneWork, between one and the
// function's capacity (max instances × concurrency); the capacity until
// an event was timed. A fast function's poll then goes in few large
// batches, a slow one's keys side by side.
func (c *consumer) keyLanes(n int) int {
	capacity := max(c.f.cfg.MaxInstances, 1) * max(c.f.cfg.Concurrency, 1)
	per := time.Duration(c.perEvent.Load())
	if per <= 0 {
		return capacity
	}
	return max(1, min(capacity, int(time.Duration(n)*per/laneWork)+1))
}

// fnv32 is the 32-bit FNV-1a hash of b.
func fnv32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// observeLag sets the lag gauge of a partition just polled: the records
// after the last one fetched.
func (c *consumer) observeLag(ftp kgo.FetchTopicPartition) {
	if n := len(ftp.Records); n > 0 {
		lag := ftp.HighWatermark - (ftp.Records[n-1].Offset + 1)
		c.p.opts.metrics.lag.WithLabelValues(c.f.cfg.Name, strings.TrimPrefix(c.tr.Stream, c.prefix), strconv.Itoa(int(ftp.Partition))).Set(float64(max(lag, 0)))
	}
}

// forgetLag drops the lag gauges of partitions this pool no longer
// consumes.
func (c *consumer) forgetLag(gone map[string][]int32) {
	for _, parts := range gone {
		for _, p := range parts {
			c.p.opts.metrics.lag.DeleteLabelValues(c.f.cfg.Name, strings.TrimPrefix(c.tr.Stream, c.prefix), strconv.Itoa(int(p)))
		}
	}
}
