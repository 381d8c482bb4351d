package telemetry

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is a span processor that batches ended spans for an exporter,
// as the SDK's BatchSpanProcessor does and with its settings
// (OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE,
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_EXPORT_TIMEOUT), but without
// waking a goroutine for every span: the SDK's hands each span to its
// exporting goroutine through a channel, a wake-up per span that, on a
// pool's few cores, lands on the calls' path (BenchmarkTracing). Here a
// span is appended to a slice under a mutex, and the exporting goroutine
// wakes once a batch is full or the delay has passed. Spans beyond the
// queue's size are dropped, as the SDK's are.
type batcher struct {
	exp                sdktrace.SpanExporter
	delay, timeout     time.Duration
	maxQueue, maxBatch int
	full               chan struct{} // a batch is ready: wake the exporter
	stop               chan struct{}
	done               chan struct{}
	mu                 sync.Mutex
	queue              []sdktrace.ReadOnlySpan
	dropped            int
	stopOnce           sync.Once
	exportMu           sync.Mutex // one export at a time
	flushReq           chan chan struct{}
}

func newBatcher(exp sdktrace.SpanExporter) *batcher {
	b := &batcher{exp: exp,
		delay:    envMillis("OTEL_BSP_SCHEDULE_DELAY", 5000),
		timeout:  envMillis("OTEL_BSP_EXPORT_TIMEOUT", 30000),
		maxQueue: envInt("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
		maxBatch: envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
		full:     make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		flushReq: make(chan chan struct{}),
	}
	b.maxBatch = min(b.maxBatch, b.maxQueue)
	go b.run()
	return b
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func envMillis(k string, def int) time.Duration {
	return time.Duration(envInt(k, def)) * time.Millisecond
}

func handle(err error) { otel.Handle(err) }

func errDropped(n int) error {
	return fmt.Errorf("%d spans dropped: more ended than the queue holds between exports (OTEL_BSP_MAX_QUEUE_SIZE)", n)
}

func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if len(b.queue) >= b.maxQueue {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.queue = append(b.queue, s)
	ready := len(b.queue) == b.maxBatch
	b.mu.Unlock()
	if ready {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
}

func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.delay)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.full:
		case ack := <-b.flushReq:
			b.exportAll()
			close(ack)
			continue
		}
		b.exportAll()
	}
}

// exportAll exports what is queued, a batch at a time.
func (b *batcher) exportAll() {
	b.exportMu.Lock()
	defer b.exportMu.Unlock()
	for {
		b.mu.Lock()
		n := min(len(b.queue), b.maxBatch)
		if n == 0 {
			b.mu.Unlock()
			return
		}
		batch := make([]sdktrace.ReadOnlySpan, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		dropped := b.dropped
		b.dropped = 0
		b.mu.Unlock()
		if dropped > 0 {
			handle(errDropped(dropped))
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			handle(err)
		}
	}
}

func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flushReq <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *batcher) Shutdown(ctx context.Context) error {
	var err error
	b.stopOnce.Do(func() {
		close(b.stop)
		<-b.done
		b.exportAll()
		err = b.exp.Shutdown(ctx)
	})
	return err
}
