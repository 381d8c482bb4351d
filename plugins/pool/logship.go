package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"
)

// Logs per invocation (docs/observability.md, "Logs"): every line a
// function's instances print, and every ctx.log call, goes to the pool's
// log as before and, once the pool is connected to Kafka (StartStreams),
// to the project's log topic, <project>._logs, as one JSON record keyed by
// the function:
//
//	{"time":"…","level":"info","function":"ingest","revision":"7e99…",
//	 "stream":"stdout","invocation":"47c…","trace_id":"4bf9…",
//	 "span_id":"00f0…","message":"…"}
//
// A line is pinned on the call its instance was running when it ran one
// alone (runtime.CallInfo); a ctx.log call always is. `butter logs`
// reads the topic. Shipping never slows a call down: records are produced
// without waiting, at most logRate lines a second per function (burst
// logBurst) are shipped, and what is over it or fails is dropped and
// counted (butter_log_lines_dropped_total).

const (
	logRate      = 1000
	logBurst     = 5000
	logRetention = 72 * time.Hour
)

// LogRecord is one record of a project's log topic.
type LogRecord struct {
	Time       time.Time `json:"time"`
	Level      string    `json:"level"`
	Function   string    `json:"function"`
	Revision   string    `json:"revision,omitempty"`
	Stream     string    `json:"stream"` // stdout, stderr or log (ctx.log)
	Invocation string    `json:"invocation,omitempty"`
	TraceID    string    `json:"trace_id,omitempty"`
	SpanID     string    `json:"span_id,omitempty"`
	Message    string    `json:"message"`
}

// logShipper produces log records to the project's log topic.
type logShipper struct {
	cl       *kgo.Client
	topic    string
	revision string
	m        *Metrics
	log      hclog.Logger
	limits   sync.Map // function → *rate.Limiter
	warned   atomic.Int64
	// The execution log's records wait in execQ for the shipper's
	// goroutine (executions.go, endExec and shipExecs), which execKick
	// wakes once per window; execKick is closed (under execMu, with
	// execsClosed) when the pool stops.
	execMu      sync.Mutex
	execQ       []execDone
	execTimer   *time.Timer // the open window's, nil when none is open
	execKick    chan struct{}
	execsClosed bool
}

// StartLogs connects the shipping of the functions' log lines to Kafka,
// for a pool that has no streams (StartStreams does it for one that
// has); once only. The topic is created in the background: a pool whose
// Kafka is down still starts, and its lines go to its own log only until
// the topic exists.
func (p *Pool) StartLogs(kafka broker.Config) error {
	base, err := kafka.Opts()
	if err != nil {
		return err
	}
	return p.startLogs(base)
}

func (p *Pool) startLogs(base []kgo.Opt) error {
	if p.shipper.Load() != nil {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), base...), kgo.ProducerLinger(20*time.Millisecond), kgo.RecordRetries(3))...)
	if err != nil {
		return err
	}
	s := &logShipper{cl: cl, topic: LogTopic(p.cfg.Project), revision: p.cfg.Revision, m: p.opts.metrics, log: p.opts.logger.Named("logs"),
		execKick: make(chan struct{}, 1)}
	shipped := make(chan struct{})
	go func() {
		defer close(shipped)
		p.shipExecs(s)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	p.logStop = func() {
		once.Do(func() {
			cancel()
			s.execMu.Lock()
			s.execsClosed = true
			if s.execTimer != nil {
				s.execTimer.Stop()
				s.execTimer = nil
			}
			close(s.execKick)
			s.execMu.Unlock()
			<-shipped
			flush, done := context.WithTimeout(context.Background(), 2*time.Second)
			_ = cl.Flush(flush)
			done()
			cl.Close()
		})
	}
	go func() {
		backoff := time.Second
		for {
			err := broker.EnsureTopics(ctx, kadm.NewClient(cl), append([]broker.Topic{{Name: s.topic, Partitions: 1, Retention: logRetention}}, p.execTopics()...))
			if err == nil || ctx.Err() != nil {
				return
			}
			s.log.Warn("cannot create the log topics yet; functions' lines go to this log only until they exist, and executions are not recorded", "topic", s.topic, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}()
	p.shipper.Store(s)
	return nil
}

// LogTopic is a project's log topic.
func LogTopic(project string) string { return names.Topic(project, "_logs") }

// ship sends one line of function fn.
func (s *logShipper) ship(fn, stream, level string, line []byte, call runtime.CallInfo) {
	lim, ok := s.limits.Load(fn)
	if !ok {
		lim, _ = s.limits.LoadOrStore(fn, rate.NewLimiter(logRate, logBurst))
	}
	if !lim.(*rate.Limiter).Allow() {
		s.m.logDropped.WithLabelValues(fn, "rate").Inc()
		return
	}
	rec := LogRecord{Time: time.Now().UTC(), Level: level, Function: fn, Revision: s.revision, Stream: stream,
		Invocation: call.ID, Message: string(bytes.TrimRight(line, "\r\n"))}
	if tp := call.Traceparent; len(tp) == 55 {
		rec.TraceID, rec.SpanID = tp[3:35], tp[36:52]
	}
	v, _ := json.Marshal(rec)
	s.cl.Produce(context.Background(), &kgo.Record{Topic: s.topic, Key: []byte(fn), Value: v}, func(_ *kgo.Record, err error) {
		if err != nil {
			s.m.logDropped.WithLabelValues(fn, "produce").Inc()
			if now := time.Now().Unix(); s.warned.Load() < now-60 {
				s.warned.Store(now)
				s.log.Warn("log lines not shipped", "topic", s.topic, "error", err)
			}
			return
		}
		s.m.logShipped.WithLabelValues(fn).Inc()
	})
}

// fnLogs is a function's Logs writer: each line goes on to w (the pool's
// log) and to the log topic, with the call it is attributed to.
type fnLogs struct {
	w  io.Writer
	p  *Pool
	fn string
}

func (l *fnLogs) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if s := l.p.shipper.Load(); s != nil {
		for line := range bytes.Lines(b) {
			s.ship(l.fn, "stderr", lineLevel(line), line, runtime.CallInfo{})
		}
	}
	return n, err
}

func (l *fnLogs) WriteLine(line []byte, stream string, call runtime.CallInfo) {
	_, _ = l.w.Write(line)
	if s := l.p.shipper.Load(); s != nil {
		s.ship(l.fn, stream, lineLevel(line), line, call)
	}
}

// lineLevel is the level a line's prefix names, as hclog reads it
// ("[WARN] disk almost full"); info without one.
func lineLevel(line []byte) string {
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 1 {
			if lv := strings.ToLower(string(line[1:i])); logLevels[lv] != 0 {
				if lv == "warning" {
					lv = "warn"
				}
				return lv
			}
		}
	}
	return "info"
}

// shipCall ships a function's ctx.log call made in the call of origin o.
func (p *Pool) shipCall(fn string, o *origin, level, message string) {
	s := p.shipper.Load()
	if s == nil {
		return
	}
	level = strings.ToLower(strings.TrimSpace(level))
	if _, ok := logLevels[level]; !ok {
		level = "info"
	}
	var c runtime.CallInfo
	if o != nil {
		c = runtime.CallInfo{ID: o.id, Traceparent: o.traceparent}
	}
	s.ship(fn, "log", level, []byte(message), c)
}
