package scheduler

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// What the control plane reads from, and writes to, a project's Kafka
// for the web UI and the CLI: a function's dead letters (listed, and one
// replayed to where it failed) and the project's log lines (followed).
// It reaches Kafka with Config.KafkaConfig (butter server's -kafka-brokers or
// $BUTTER_KAFKA_*, butter dev's embedded broker): the cluster of the
// timer service and the autoscaler's lag, which is the projects' own
// unless a project's kafka block names another (then these read the
// server's cluster, not the project's). Nothing here goes through Raft:
// any node answers, reading the revision from its own state.

// Bounds of the Kafka reads.
const (
	// defaultDeadLetters and maxDeadLetters bound ?limit of a dead-letter
	// list, per topic.
	defaultDeadLetters = 50
	maxDeadLetters     = 500
	// kafkaReadTime bounds a read of records that exist (a list, the
	// record a replay writes back).
	kafkaReadTime = 10 * time.Second
	// logBacklog is the most log lines a follow starts with, per
	// partition, before the ones to come.
	logBacklog = 2000
	// logKeepAlive is how often a quiet log stream sends a comment, so
	// that proxies keep it open.
	logKeepAlive = 15 * time.Second
)

// errNoKafka answers the Kafka routes of a server without brokers.
var errNoKafka = fmt.Errorf("this control plane has no Kafka brokers: start butter server with -kafka-brokers or $%s (the projects' cluster)", broker.EnvBrokers)

// kafkaOpts are the options of a client of Config.KafkaConfig.
func (s *Server) kafkaOpts() ([]kgo.Opt, error) {
	if len(s.cfg.KafkaConfig.Brokers) == 0 {
		return nil, errNoKafka
	}
	return s.cfg.KafkaConfig.Opts()
}

// kafkaClient is the server's client of Config.KafkaConfig for metadata and
// replays (records carry their partition: the manual partitioner),
// made on first use and closed by Close.
func (s *Server) kafkaClient() (*kgo.Client, error) {
	s.kafkaMu.Lock()
	defer s.kafkaMu.Unlock()
	if s.kafka != nil {
		return s.kafka, nil
	}
	if s.kafkaClosed {
		return nil, errors.New("the control plane is stopping")
	}
	opts, err := s.kafkaOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.kafka = cl
	return cl, nil
}

// closeKafka closes the client kafkaClient made.
func (s *Server) closeKafka() {
	s.kafkaMu.Lock()
	defer s.kafkaMu.Unlock()
	s.kafkaClosed = true
	if s.kafka != nil {
		s.kafka.Close()
		s.kafka = nil
	}
}

// activeFunction is a function of a project's active revision, with a
// 404 when there is none.
func (s *Server) activeFunction(project, function string) (*pool.FunctionConfig, int, error) {
	var rev *fsm.Revision
	var known bool
	s.fsm.Read(func(st *fsm.State) {
		_, known = st.Projects[project]
		if x := st.Revisions[project][st.Active[project]]; x != nil {
			cp := *x
			rev = &cp
		}
	})
	if !known {
		return nil, 404, fmt.Errorf("no project %q; deploy it with butter deploy", project)
	}
	if rev == nil {
		return nil, 404, fmt.Errorf("project %q has no active revision; deploy it with butter deploy", project)
	}
	var fns []pool.FunctionConfig
	if len(rev.Job) > 0 { // a revision recorded without a job runs nothing
		var err error
		if fns, err = jobs.Functions(rev.Job); err != nil {
			return nil, 500, fmt.Errorf("revision %s of project %q: %w", rev.ID, project, err)
		}
	}
	for i := range fns {
		if fns[i].Name == function {
			return &fns[i], 200, nil
		}
	}
	return nil, 404, fmt.Errorf("project %q has no function %q in its active revision %s", project, function, rev.ID)
}

// listDeadLetters is GET /v1/projects/{name}/functions/{function}/deadletters:
// the newest records (?limit per topic, 50 by default) of the function's
// dead-letter topics that are its own (ce_errorfunction, or without it:
// written before pools named it), newest first.
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	if !s.local(w, r) {
		return
	}
	limit := defaultDeadLetters
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetters {
			writeErr(w, 400, fmt.Errorf("limit %q: want a number of records from 1 to %d", clip(v), maxDeadLetters))
			return
		}
		limit = n
	}
	project, function := r.PathValue("name"), r.PathValue("function")
	f, code, err := s.activeFunction(project, function)
	if err != nil {
		writeErr(w, code, err)
		return
	}
	cl, err := s.kafkaClient()
	if err != nil {
		writeErr(w, 503, err)
		return
	}
	out := api.DeadLetterList{Project: project, Function: function, Topics: deadLetterTopics(*f), DeadLetters: []api.DeadLetter{}}
	ctx, cancel := context.WithTimeout(r.Context(), kafkaReadTime)
	defer cancel()
	for _, topic := range out.Topics {
		recs, err := s.readTail(ctx, cl, topic, limit)
		if err != nil {
			writeErr(w, 503, fmt.Errorf("read the dead letters of function %q in %s at %s: %w", function, topic, strings.Join(s.cfg.KafkaConfig.Brokers, ","), s.cfg.KafkaConfig.Explain(err)))
			return
		}
		for _, rec := range recs {
			if fn := broker.Header(rec, broker.HeaderErrorFunction); fn == "" || fn == function {
				out.DeadLetters = append(out.DeadLetters, apiDeadLetter(rec))
			}
		}
	}
	// Newest first: by time, then (records of one millisecond) by offset.
	sort.SliceStable(out.DeadLetters, func(i, j int) bool {
		a, b := out.DeadLetters[i], out.DeadLetters[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.Offset > b.Offset
	})
	writeJSON(w, 200, out)
}

// apiDeadLetter is a dead letter's record as the API shows it.
func apiDeadLetter(r *kgo.Record) api.DeadLetter {
	d := api.DeadLetter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp.UTC(),
		ID: broker.Header(r, broker.HeaderID), Key: string(r.Key), Function: broker.Header(r, broker.HeaderErrorFunction),
		ErrorType: broker.Header(r, broker.HeaderErrorType), ErrorMessage: broker.Header(r, broker.HeaderErrorMessage),
		ErrorDetails: broker.Header(r, broker.HeaderErrorDetails), Attempts: broker.Attempts(r), Origin: broker.Header(r, broker.HeaderOrigin),
		Headers: map[string]string{}}
	if utf8.Valid(r.Value) {
		d.Value = string(r.Value)
	} else {
		d.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
	}
	for _, h := range r.Headers {
		d.Headers[h.Key] = string(h.Value)
	}
	return d
}

// readTail reads the last limit records (at most) of each partition of
// topic, committed ones only (a transaction's dead letters once it
// commits). A topic that does not exist has none.
func (s *Server) readTail(ctx context.Context, cl *kgo.Client, topic string, limit int) ([]*kgo.Record, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	from := map[int32]kgo.Offset{}
	want := map[int32]int64{} // partition → the end to reach
	for p, end := range ends[topic] {
		start := int64(0)
		if so, ok := starts.Lookup(topic, p); ok {
			start = so.Offset
		}
		if f := max(start, end.Offset-int64(limit)); f < end.Offset {
			from[p] = kgo.NewOffset().At(f)
			want[p] = end.Offset
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	return s.consume(ctx, map[string]map[int32]kgo.Offset{topic: from}, func(r *kgo.Record) bool {
		if r.Offset >= want[r.Partition]-1 {
			delete(want, r.Partition)
		}
		return len(want) == 0
	})
}

// consume reads partitions from the offsets given, read_committed, until
// done says so after a record (control records included, which done sees
// but the result leaves out) or ctx ends: then it is an error.
func (s *Server) consume(ctx context.Context, parts map[string]map[int32]kgo.Offset, done func(*kgo.Record) bool) ([]*kgo.Record, error) {
	opts, err := s.kafkaOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(parts), kgo.KeepControlRecords(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("records not read within %s: %w", kafkaReadTime, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("%s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		finished := false
		fs.EachRecord(func(r *kgo.Record) {
			if finished {
				return
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			finished = done(r)
		})
		if finished {
			return out, nil
		}
	}
}

// The headers a dead letter adds to its event, which a replay takes off.
var deadLetterHeaders = []string{broker.HeaderErrorType, broker.HeaderErrorMessage, broker.HeaderErrorDetails, broker.HeaderAttempts,
	broker.HeaderErrorFunction, broker.HeaderOrigin, broker.HeaderReplayedFrom}

// replayDeadLetter is POST
// /v1/projects/{name}/functions/{function}/deadletters/replay: it reads
// the dead letter the body names from one of the function's dead-letter
// topics and writes its event back where it failed (ce_origintopic: a
// topic the function consumes, and the same partition), with its key,
// value and headers but the dead letter's own (error, attempts, origin),
// and ce_replayedfrom naming the dead letter. Every function that reads
// that topic gets the event again, as a new record: Kafka keeps the dead
// letter as it is.
func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	if !s.local(w, r) {
		return
	}
	var req api.ReplayRequest
	if !s.decodeBody(w, r, "replay body", &req) {
		return
	}
	project, function := r.PathValue("name"), r.PathValue("function")
	f, code, err := s.activeFunction(project, function)
	if err != nil {
		writeErr(w, code, err)
		return
	}
	if topics := deadLetterTopics(*f); !slices.Contains(topics, req.Topic) {
		writeErr(w, 400, fmt.Errorf("replay body: topic %q is not a dead-letter topic of function %q (its are %s)", clip(req.Topic), function, strings.Join(topics, ", ")))
		return
	}
	if req.Partition < 0 || req.Offset < 0 {
		writeErr(w, 400, fmt.Errorf("replay body: partition %d, offset %d: want a record's partition and offset (0 or more)", req.Partition, req.Offset))
		return
	}
	cl, err := s.kafkaClient()
	if err != nil {
		writeErr(w, 503, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), kafkaReadTime)
	defer cancel()
	from := fmt.Sprintf("%s/%d/%d", req.Topic, req.Partition, req.Offset)
	dl, code, err := s.readRecord(ctx, cl, req.Topic, req.Partition, req.Offset)
	if err != nil {
		writeErr(w, code, fmt.Errorf("dead letter %s: %w", from, err))
		return
	}
	if fn := broker.Header(dl, broker.HeaderErrorFunction); fn != "" && fn != function {
		writeErr(w, 400, fmt.Errorf("dead letter %s is function %q's, not %q's: replay it as that function's", from, fn, function))
		return
	}
	origin := broker.Header(dl, broker.HeaderOrigin)
	topic, partition, ok := parseOrigin(origin)
	if !ok {
		writeErr(w, 400, fmt.Errorf("dead letter %s has no %s (topic/partition/offset) saying where it failed, so it cannot be replayed", from, broker.HeaderOrigin))
		return
	}
	consumed := make([]string, 0, len(f.Streams))
	for _, tr := range f.Streams {
		consumed = append(consumed, tr.Stream)
	}
	if !slices.Contains(consumed, topic) {
		writeErr(w, 400, fmt.Errorf("dead letter %s failed on %s, which function %q does not consume (it consumes %s): it is not replayed there", from, topic, function, strings.Join(consumed, ", ")))
		return
	}
	rec := &kgo.Record{Topic: topic, Partition: partition, Key: dl.Key, Value: dl.Value}
	for _, h := range dl.Headers {
		if !slices.Contains(deadLetterHeaders, h.Key) {
			rec.Headers = append(rec.Headers, h)
		}
	}
	broker.SetHeader(rec, broker.HeaderReplayedFrom, from)
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		writeErr(w, 503, fmt.Errorf("replay dead letter %s to %s partition %d: %w", from, topic, partition, s.cfg.KafkaConfig.Explain(err)))
		return
	}
	s.log.Info("dead letter replayed", "project", project, "function", function, "from", from, "to", fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset))
	writeJSON(w, 200, api.ReplayResponse{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, From: from})
}

// parseOrigin reads a ce_origintopic, "topic/partition/offset".
func parseOrigin(s string) (topic string, partition int32, ok bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || !topicRE.MatchString(parts[0]) {
		return "", 0, false
	}
	p, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || p < 0 {
		return "", 0, false
	}
	if _, err := strconv.ParseInt(parts[2], 10, 64); err != nil {
		return "", 0, false
	}
	return parts[0], int32(p), true
}

// readRecord reads the committed record at topic/partition/offset, with
// the status to answer when it cannot (404: no such record).
func (s *Server) readRecord(ctx context.Context, cl *kgo.Client, topic string, partition int32, offset int64) (*kgo.Record, int, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, 404, fmt.Errorf("no topic %s", topic)
	}
	if err != nil {
		return nil, 503, s.cfg.KafkaConfig.Explain(err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok {
		return nil, 404, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	if offset >= end.Offset {
		return nil, 404, fmt.Errorf("no record at offset %d: the partition ends at %d", offset, end.Offset)
	}
	recs, err := s.consume(ctx, map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}, func(*kgo.Record) bool { return true })
	if err != nil {
		return nil, 503, s.cfg.KafkaConfig.Explain(err)
	}
	if len(recs) == 0 || recs[0].Offset != offset {
		return nil, 404, fmt.Errorf("no record at offset %d (deleted, compacted, or a transaction's marker)", offset)
	}
	return recs[0], 200, nil
}

// followLogs is GET /v1/projects/{name}/logs: the project's log lines
// (the <project>._logs topic the pools write, docs/observability.md
// "Logs") as server-sent events, one `data:` line of the pool's JSON
// record (pool.LogRecord) each: those since ?since (a duration back, or
// an RFC 3339 time; 15m by default; at most 2,000 a partition), then,
// with ?follow=true, each new one as it comes, until the client goes
// away. ?function, ?invocation and ?trace keep only that function's,
// invocation's or trace's lines. A project whose log topic does not exist
// yet gets its lines from the topic's creation on.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	project := r.PathValue("name")
	since := time.Now().Add(-15 * time.Minute)
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			since = t
		} else {
			writeErr(w, 400, fmt.Errorf("since %q: want a duration such as 10m, or an RFC 3339 time", clip(v)))
			return
		}
	}
	function, invocation, trace := q.Get("function"), q.Get("invocation"), q.Get("trace")
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	var known bool
	s.fsm.Read(func(st *fsm.State) { _, known = st.Projects[project] })
	if !known {
		writeErr(w, 404, fmt.Errorf("no project %q; deploy it with butter deploy", project))
		return
	}
	cl, err := s.kafkaClient()
	if err != nil {
		writeErr(w, 503, err)
		return
	}
	opts, err := s.kafkaOpts()
	if err != nil {
		writeErr(w, 503, err)
		return
	}
	topic := pool.LogTopic(project)
	ctx := r.Context()
	lctx, cancel := context.WithTimeout(ctx, kafkaReadTime)
	from, ends, err := logOffsets(lctx, kadm.NewClient(cl), topic, since)
	cancel()
	if err != nil {
		writeErr(w, 503, fmt.Errorf("read the log topic %s at %s: %w", topic, strings.Join(s.cfg.KafkaConfig.Brokers, ","), s.cfg.KafkaConfig.Explain(err)))
		return
	}
	if from == nil && !follow {
		from = map[int32]int64{}
	}
	parts := map[int32]kgo.Offset{}
	for p, o := range from {
		parts[p] = kgo.NewOffset().At(o)
	}
	consume := kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	if from == nil {
		// No topic yet: read it from its start once the pools create it.
		consume = kgo.ConsumeTopics(topic)
	}
	lc, err := kgo.NewClient(append(opts, consume, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(time.Second))...)
	if err != nil {
		writeErr(w, 503, fmt.Errorf("kafka client: %w", err))
		return
	}
	defer lc.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	_, _ = fmt.Fprintf(w, ": lines of %s\n\n", topic)
	_ = rc.Flush()
	pending := map[int32]int64{}
	for p, o := range from {
		if end := ends[p]; o < end {
			pending[p] = end
		}
	}
	if !follow && len(pending) == 0 {
		return
	}
	var buf bytes.Buffer
	for {
		pctx, cancel := context.WithTimeout(ctx, logKeepAlive)
		fs := lc.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		buf.Reset()
		fs.EachRecord(func(rec *kgo.Record) {
			if end, ok := pending[rec.Partition]; ok && rec.Offset >= end-1 {
				delete(pending, rec.Partition)
			}
			if function != "" && string(rec.Key) != function {
				return
			}
			if invocation != "" || trace != "" {
				var l pool.LogRecord
				if json.Unmarshal(rec.Value, &l) != nil || (invocation != "" && l.Invocation != invocation) || (trace != "" && l.TraceID != trace) {
					return
				}
			}
			buf.WriteString("id: ")
			buf.WriteString(strconv.FormatInt(rec.Offset, 10))
			buf.WriteByte('\n')
			for _, line := range bytes.Split(bytes.TrimRight(rec.Value, "\n"), []byte("\n")) {
				buf.WriteString("data: ")
				buf.Write(line)
				buf.WriteByte('\n')
			}
			buf.WriteByte('\n')
		})
		if buf.Len() == 0 {
			buf.WriteString(": keep-alive\n\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if !follow && len(pending) == 0 {
			return
		}
	}
}

// logOffsets are where a log read starts on each partition of topic (the
// first line at or after since, at most logBacklog lines back from the
// end) and the ends now; nil offsets when the topic does not exist yet.
func logOffsets(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (map[int32]int64, map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	from, end := map[int32]int64{}, map[int32]int64{}
	for p, e := range ends[topic] {
		o := e.Offset
		if a, ok := after.Lookup(topic, p); ok && a.Offset >= 0 && a.Offset < o {
			o = a.Offset
		}
		from[p] = max(o, e.Offset-logBacklog)
		end[p] = e.Offset
	}
	return from, end, nil
}
