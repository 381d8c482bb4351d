package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/cli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
)

// kafkaHelp is the -kafka-brokers option of emit and tail.
const kafkaHelp = `
  -kafka-brokers=host:port[,...]
    The project's Kafka. Default: $BUTTER_KAFKA_BROKERS. TLS and SASL come
    from $BUTTER_KAFKA_TLS, $BUTTER_KAFKA_CA_FILE and
    $BUTTER_KAFKA_SASL_{MECHANISM,USERNAME,PASSWORD} (docs/events.md).
`

// emitSource is the CloudEvents source of records `butter emit` writes
// when -source does not say.
const emitSource = "butter/cli"

// tailFetchWait is how long a fetch of butter tail waits for records.
const tailFetchWait = 300 * time.Millisecond

// maxLine is the longest line `butter emit -lines` reads.
const maxLine = 16 << 20

type emitCommand struct{ ui cli.Ui }

func (c *emitCommand) Synopsis() string { return "Write events to a project's stream" }
func (c *emitCommand) Help() string {
	return trimHelp(`
Usage: butter emit [options] <project> <stream> [value]

  Writes an event to the stream's topic, <project>.<stream>, in the
  envelope Butter's functions emit (CloudEvents 1.0, Kafka binary mode:
  ce_id, ce_source, ce_type=butter.emit, ce_specversion, ce_time headers,
  docs/events.md). Without a value, standard input is the value; with
  -lines, each non-empty line of standard input is one event. What was
  written (topic, partition, offset, id) is printed to standard error.

  The topic must exist: it is created when the project is deployed, or by
  "butter broker -dev <dir>" and "butter dev" for the embedded broker.
  Nothing is created here.

Options:

  -key=KEY
    The record key, which picks the partition (and a function's state
    key). Default: none.

  -header=NAME=VALUE
    An extra record header. May be repeated. The CloudEvents attributes
    are set by the options below, not here.

  -lines
    One event per non-empty line of standard input.

  -source=butter/cli
    The event's ce_source.

  -id=ID
    The event's ce_id (one event only). Default: a random id per event.

  -content-type=TYPE
    The content-type header, such as application/json. Default: none,
    as in a function's emits.
` + kafkaHelp)
}

func (c *emitCommand) Run(args []string) int {
	fs := newFlagSet("emit")
	kafka := fs.String("kafka-brokers", "", "")
	key := fs.String("key", "", "")
	var headers stringList
	fs.Var(&headers, "header", "")
	lines := fs.Bool("lines", false, "")
	source := fs.String("source", emitSource, "")
	id := fs.String("id", "", "")
	contentType := fs.String("content-type", "", "")
	pos, err := parseInterspersed(fs, args)
	switch {
	case err != nil:
	case len(pos) < 2:
		err = errors.New("give the project and the stream")
	case len(pos) > 3:
		return usageError(c.ui, c.Help(), nil, pos, 3)
	case len(pos) == 3 && *lines:
		err = errors.New("-lines reads standard input: give no value with it")
	case *source == "":
		err = errors.New("-source is empty: give the event's source, such as butter/cli")
	}
	var hdrs []kgo.RecordHeader
	if err == nil {
		hdrs, err = parseHeaders(headers)
	}
	if err == nil && *contentType != "" {
		if _, _, perr := mime.ParseMediaType(*contentType); perr != nil {
			err = fmt.Errorf("-content-type=%q is not a media type such as application/json: %v", *contentType, perr)
		}
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 3)
	}
	project, stream := pos[0], pos[1]
	topic := names.Topic(project, stream)

	var values [][]byte
	switch {
	case len(pos) == 3:
		values = [][]byte{[]byte(pos[2])}
	case *lines:
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			if l := bytes.TrimSuffix(sc.Bytes(), []byte("\r")); len(bytes.TrimSpace(l)) > 0 {
				values = append(values, bytes.Clone(l))
			}
		}
		if err := sc.Err(); err != nil {
			return failed(c.ui, fmt.Errorf("reading standard input, line %d: %w", len(values)+1, err))
		}
		if len(values) == 0 {
			return failed(c.ui, errors.New("-lines: standard input has no non-empty line, so there is nothing to emit"))
		}
	default:
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return failed(c.ui, fmt.Errorf("reading standard input: %w", err))
		}
		values = [][]byte{b}
	}
	if *id != "" && len(values) > 1 {
		return usageError(c.ui, c.Help(), fmt.Errorf("-id names one event, and -lines read %d: leave -id out to give each its own", len(values)), nil, 3)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kcfg, err := broker.Resolve(ctx, *kafka, nil, nil)
	if err != nil {
		return failed(c.ui, err)
	}
	cl, err := kcfg.NewProducer(kgo.RecordDeliveryTimeout(callTimeout))
	if err != nil {
		return failed(c.ui, err)
	}
	defer cl.Close()
	if err := topicExists(ctx, kcfg, cl, project, stream); err != nil {
		return failed(c.ui, err)
	}
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		eid := *id
		if eid == "" {
			eid = randomID()
		}
		var k []byte
		if *key != "" {
			k = []byte(*key)
		}
		r := broker.NewEvent(topic, k, v, eid, *source, "butter.emit")
		if *contentType != "" {
			broker.SetHeader(r, broker.HeaderContentType, *contentType)
		}
		r.Headers = append(r.Headers, hdrs...)
		recs[i] = r
	}
	pctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	failures := 0
	for _, res := range cl.ProduceSync(pctx, recs...) {
		if res.Err != nil {
			failures++
			fmt.Fprintf(os.Stderr, "Error: writing event %s to %s at %s: %v\n", broker.Header(res.Record, broker.HeaderID), topic, strings.Join(kcfg.Brokers, ","), kcfg.Explain(res.Err))
			continue
		}
		fmt.Fprintf(os.Stderr, "%s partition %d offset %d id %s\n", res.Record.Topic, res.Record.Partition, res.Record.Offset, broker.Header(res.Record, broker.HeaderID))
	}
	if failures > 0 {
		c.ui.Error(fmt.Sprintf("Error: %d of %d events were not written to %s", failures, len(recs), topic))
		return exitInvalid
	}
	return exitOK
}

// parseHeaders reads -header NAME=VALUE options. The CloudEvents
// attributes and content-type have their own options, so a header that
// would set one is refused rather than sent twice.
func parseHeaders(hs []string) ([]kgo.RecordHeader, error) {
	reserved := map[string]string{
		broker.HeaderID: "-id", broker.HeaderSource: "-source", broker.HeaderType: "none: emits are butter.emit",
		broker.HeaderSpecVersion: "none: it is 1.0", broker.HeaderTime: "none: it is the time of the emit",
		broker.HeaderContentType: "-content-type",
	}
	var out []kgo.RecordHeader
	for _, h := range hs {
		name, value, ok := strings.Cut(h, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("-header=%q: give NAME=VALUE", h)
		}
		if opt, r := reserved[strings.ToLower(name)]; r {
			return nil, fmt.Errorf("-header=%q: %s is set by Butter (option: %s)", h, name, opt)
		}
		out = append(out, kgo.RecordHeader{Key: name, Value: []byte(value)})
	}
	return out, nil
}

// randomID is a random UUID (version 4), the id of an event emitted
// without -id.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// topicExists is nil when the stream's topic exists, and otherwise says
// which topic is missing where, and how it is created. Neither emit nor
// tail creates a topic.
func topicExists(ctx context.Context, kcfg broker.Config, cl *kgo.Client, project, stream string) error {
	topic := names.Topic(project, stream)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing topic %s at %s: %w", topic, strings.Join(kcfg.Brokers, ","), kcfg.Explain(err))
	}
	if t, ok := td[topic]; !ok || t.Err != nil {
		return fmt.Errorf("topic %s (stream %q of project %q) does not exist at %s: it is created when the project is deployed (butter deploy), or, on the embedded broker, by butter broker -dev <project dir> or butter dev; check the project and stream names", topic, stream, project, strings.Join(kcfg.Brokers, ","))
	}
	return nil
}

type tailCommand struct{ ui cli.Ui }

func (c *tailCommand) Synopsis() string { return "Print the events of a project's stream" }
func (c *tailCommand) Help() string {
	return trimHelp(`
Usage: butter tail [options] <project> <stream>

  Prints the events of the stream's topic, <project>.<stream>, one JSON
  object a line, with the CloudEvents attributes decoded:

    {"topic":"iot.readings","partition":0,"offset":4,"key":"s1",
     "id":"...","source":"butter/iot/ingest","type":"butter.emit",
     "time":"...","headers":{"ce_specversion":"1.0"},"data":{"t":21}}

  "data" is the value as JSON when its content-type is JSON, or when it has
  none and the value is JSON; otherwise a string ("data_base64" when the
  value is not UTF-8). "headers" holds the headers other than ce_id,
  ce_source, ce_type and ce_time. A record without ce_id gets the id
  <topic>-<partition>-<offset> (docs/events.md).

  Without -f, it stops at the end of the topic as it was when it started.
  Records of different partitions are not in order between them. Nothing
  is committed: tail is not a consumer group and takes no events from
  functions.

Options:

  -from=first
    Where to start in each partition: first, latest, an offset (the same in
    every partition), or an RFC 3339 time (the first record at or after it).

  -f
    Follow: keep printing new events until interrupted.

  -n=N
    Stop after N events. Default: no limit.
` + kafkaHelp)
}

// tailRecord is one line of `butter tail`.
type tailRecord struct {
	Topic      string            `json:"topic"`
	Partition  int32             `json:"partition"`
	Offset     int64             `json:"offset"`
	Key        *string           `json:"key"`
	KeyBase64  string            `json:"key_base64,omitempty"`
	ID         string            `json:"id"`
	Source     string            `json:"source,omitempty"`
	Type       string            `json:"type,omitempty"`
	Time       string            `json:"time,omitempty"`
	Timestamp  string            `json:"timestamp"`
	Headers    map[string]string `json:"headers"`
	Data       json.RawMessage   `json:"data,omitempty"`
	DataBase64 string            `json:"data_base64,omitempty"`
}

func (c *tailCommand) Run(args []string) int {
	fs := newFlagSet("tail")
	kafka := fs.String("kafka-brokers", "", "")
	from := fs.String("from", "first", "")
	follow := fs.Bool("f", false, "")
	limit := fs.Int("n", 0, "")
	pos, err := parseInterspersed(fs, args)
	switch {
	case err != nil:
	case len(pos) < 2:
		err = errors.New("give the project and the stream")
	case len(pos) > 2:
		return usageError(c.ui, c.Help(), nil, pos, 2)
	case *limit < 0:
		err = fmt.Errorf("-n=%d: give a positive number of events, or leave -n out", *limit)
	}
	var start startAt
	if err == nil {
		start, err = parseFrom(*from)
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}
	project, stream := pos[0], pos[1]
	topic := names.Topic(project, stream)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kcfg, err := broker.Resolve(ctx, *kafka, nil, nil)
	if err != nil {
		return failed(c.ui, err)
	}
	opts, err := kcfg.Opts()
	if err != nil {
		return failed(c.ui, err)
	}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return failed(c.ui, fmt.Errorf("kafka client: %w", err))
	}
	defer admin.Close()
	if err := topicExists(ctx, kcfg, admin, project, stream); err != nil {
		return failed(c.ui, err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	printed := 0
	err = readTopic(ctx, kcfg, opts, admin, topic, start, *follow, func(r *kgo.Record) bool {
		line, _ := json.Marshal(decodeRecord(r))
		_, _ = out.Write(append(line, '\n'))
		printed++
		return *limit > 0 && printed >= *limit
	}, out.Flush)
	if err != nil {
		_ = out.Flush()
		return failed(c.ui, err)
	}
	return exitOK
}

// readTopic reads topic from start, passing each record (not control
// records) to each until it returns true, and calling flush after each
// fetch; without follow it stops at the end of each partition as it was
// when it started. It returns nil when interrupted (ctx) too.
//
// It reads as a read_committed consumer: records of aborted transactions
// are skipped, open ones wait for their commit. Control records
// (transaction markers) are kept so that their offsets count toward a
// partition's end. A short fetch wait lets Close, which waits for the
// fetch in flight, end soon after an interrupt.
func readTopic(ctx context.Context, kcfg broker.Config, opts []kgo.Opt, admin *kgo.Client, topic string, start startAt, follow bool, each func(*kgo.Record) bool, flush func() error) error {
	offsets, ends, err := startOffsets(ctx, kcfg, kadm.NewClient(admin), topic, start)
	if err != nil {
		return err
	}
	// Without follow, a partition is done once its end, as it was now,
	// is reached; one with nothing to read is done already.
	pending := map[int32]int64{}
	if !follow {
		for p, end := range ends {
			if offsets[p] < end {
				pending[p] = end
			}
		}
		if len(pending) == 0 {
			return nil
		}
	}
	consume := map[int32]kgo.Offset{}
	for p, o := range offsets {
		consume[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}), kgo.KeepControlRecords(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(tailFetchWait))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil // interrupted
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("reading %s partition %d at %s: %w", t, p, strings.Join(kcfg.Brokers, ","), kcfg.Explain(err))
			}
		})
		if ferr != nil {
			return ferr
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if done {
				return
			}
			if end, ok := pending[r.Partition]; ok && r.Offset >= end-1 {
				delete(pending, r.Partition)
			} else if !follow && !ok {
				return // a partition already read to its end
			}
			if r.Attrs.IsControl() {
				return
			}
			done = each(r)
		})
		if err := flush(); err != nil {
			return fmt.Errorf("writing to standard output: %w", err)
		}
		if done || (!follow && len(pending) == 0) {
			return nil
		}
	}
}

// startAt is where -from says to start.
type startAt struct {
	kind   string // first, latest, offset, time
	offset int64
	time   time.Time
}

func parseFrom(s string) (startAt, error) {
	switch s {
	case "first", "latest":
		return startAt{kind: s}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return startAt{}, fmt.Errorf("-from=%s: an offset is 0 or more", s)
		}
		return startAt{kind: "offset", offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return startAt{kind: "time", time: t}, nil
	}
	return startAt{}, fmt.Errorf("-from=%q: give first, latest, an offset such as 42, or an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
}

// startOffsets returns, for each partition of topic, the offset to start
// at and the partition's end offset now.
func startOffsets(ctx context.Context, kcfg broker.Config, adm *kadm.Client, topic string, at startAt) (starts, ends map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	where := fmt.Sprintf("topic %s at %s", topic, strings.Join(kcfg.Brokers, ","))
	read := func(what string, l kadm.ListedOffsets, err error) (map[int32]int64, error) {
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s offsets of %s: %w", what, where, kcfg.Explain(err))
		}
		m := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { m[o.Partition] = o.Offset })
		return m, nil
	}
	l, lerr := adm.ListStartOffsets(ctx, topic)
	firsts, err := read("first", l, lerr)
	if err != nil {
		return nil, nil, err
	}
	// The end is the last stable offset: records of a transaction still
	// open are not read (read_committed), so tail does not wait for them.
	l, lerr = adm.ListCommittedOffsets(ctx, topic)
	ends, err = read("end", l, lerr)
	if err != nil {
		return nil, nil, err
	}
	starts = map[int32]int64{}
	switch at.kind {
	case "first":
		starts = firsts
	case "latest":
		starts = ends
	case "offset":
		for p := range ends {
			starts[p] = min(max(at.offset, firsts[p]), ends[p])
		}
	case "time":
		l, lerr := adm.ListOffsetsAfterMilli(ctx, at.time.UnixMilli(), topic)
		after, err := read("time", l, lerr)
		if err != nil {
			return nil, nil, err
		}
		for p := range ends {
			o, ok := after[p]
			if !ok || o < 0 {
				o = ends[p]
			}
			starts[p] = min(max(o, firsts[p]), ends[p])
		}
	}
	return starts, ends, nil
}

// decodeRecord is a record as a line of `butter tail`.
func decodeRecord(r *kgo.Record) tailRecord {
	t := tailRecord{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		Headers:   map[string]string{},
	}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			t.Key = &k
		} else {
			t.KeyBase64 = base64.StdEncoding.EncodeToString(r.Key)
		}
	}
	contentType := ""
	for _, h := range r.Headers {
		switch h.Key {
		case broker.HeaderID:
			t.ID = string(h.Value)
		case broker.HeaderSource:
			t.Source = string(h.Value)
		case broker.HeaderType:
			t.Type = string(h.Value)
		case broker.HeaderTime:
			t.Time = string(h.Value)
		default:
			if h.Key == broker.HeaderContentType {
				contentType = string(h.Value)
			}
			t.Headers[h.Key] = string(h.Value)
		}
	}
	if t.ID == "" {
		t.ID = fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset)
	}
	switch {
	case len(r.Value) > 0 && (isJSONType(contentType) || contentType == "") && json.Valid(r.Value):
		var b bytes.Buffer
		if json.Compact(&b, r.Value) == nil {
			t.Data = b.Bytes()
		} else {
			t.Data = r.Value
		}
	case utf8.Valid(r.Value):
		t.Data, _ = json.Marshal(string(r.Value))
	default:
		t.DataBase64 = base64.StdEncoding.EncodeToString(r.Value)
	}
	return t
}

// isJSONType is true for application/json and the +json media types.
func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
