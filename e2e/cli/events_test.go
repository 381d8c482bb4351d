package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/e2e/e2etest"
)

// tailLine is a line of `butter tail`, as a consumer of it reads it.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	ID        string            `json:"id"`
	Source    string            `json:"source"`
	Type      string            `json:"type"`
	Time      string            `json:"time"`
	Headers   map[string]string `json:"headers"`
	Data      any               `json:"data"`
}

// eventsBroker starts the embedded broker (kfake, over TCP) with the
// topics of project "ev", and returns its address and a client of it.
func eventsBroker(t *testing.T, streams ...string) (string, *kgo.Client) {
	t.Helper()
	dev, err := broker.StartDev(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(dev.Addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	var topics []broker.Topic
	for _, s := range streams {
		topics = append(topics, broker.Topic{Name: "ev." + s, Partitions: 3})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, kadm.NewClient(cl), topics); err != nil {
		t.Fatal(err)
	}
	return dev.Addr, cl
}

// butterStdin runs butter with stdin as its standard input. The process
// gets at most a minute (a tail that does not end is killed, and the test
// then fails on its output).
func butterStdin(t *testing.T, stdin string, args ...string) e2etest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Bin(), args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = t.TempDir()
	cmd.Stdin = strings.NewReader(stdin)
	return e2etest.Run(t, cmd)
}

// tailLines parses the output of `butter tail`.
func tailLines(t *testing.T, out string) []tailLine {
	t.Helper()
	var ls []tailLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var tl tailLine
		if err := json.Unmarshal([]byte(l), &tl); err != nil {
			t.Fatalf("tail printed a line that is not JSON: %q: %v", l, err)
		}
		ls = append(ls, tl)
	}
	return ls
}

var emittedRE = regexp.MustCompile(`(?m)^(\S+) partition (\d+) offset (\d+) id (\S+)$`)

// emittedIDs are the ids `butter emit` reported on standard error.
func emittedIDs(t *testing.T, r e2etest.Result) []string {
	t.Helper()
	var ids []string
	for _, m := range emittedRE.FindAllStringSubmatch(r.Stderr, -1) {
		ids = append(ids, m[4])
	}
	return ids
}

// readAll reads every record of topic with a plain franz-go client, to
// check the envelope emit wrote independently of butter tail.
func readAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read %d records, want %d", topic, len(recs), n)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

func TestEmitAndTail(t *testing.T) {
	addr, cl := eventsBroker(t, "readings", "lines", "whole", "raw", "empty", "txn")
	kb := "-kafka-brokers=" + addr

	// A JSON value with key and header: the record carries the envelope
	// functions' emits carry, and tail shows it decoded with the same id.
	r := butterStdin(t, "", "emit", kb, "-key", "s1", "-header", "trace=abc", "-content-type", "application/json", "ev", "readings", `{"t": 21}`)
	if r.Code != 0 {
		t.Fatalf("emit: exit %d\n%s", r.Code, r.Stderr)
	}
	ids := emittedIDs(t, r)
	if len(ids) != 1 || !strings.Contains(r.Stderr, "ev.readings partition ") {
		t.Fatalf("emit reported %q, want one ev.readings record", r.Stderr)
	}
	rec := readAll(t, addr, "ev.readings", 1)[0]
	if string(rec.Key) != "s1" || string(rec.Value) != `{"t": 21}` {
		t.Errorf("record key %q value %q", rec.Key, rec.Value)
	}
	for h, want := range map[string]string{
		broker.HeaderID: ids[0], broker.HeaderSource: "butter/cli", broker.HeaderType: "butter.emit",
		broker.HeaderSpecVersion: "1.0", "trace": "abc", broker.HeaderContentType: "application/json",
	} {
		if got := broker.Header(rec, h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, broker.Header(rec, broker.HeaderTime)); err != nil {
		t.Errorf("ce_time: %v", err)
	}
	r = butterStdin(t, "", "tail", kb, "-from", "first", "ev", "readings")
	if r.Code != 0 {
		t.Fatalf("tail: exit %d\n%s", r.Code, r.Stderr)
	}
	ls := tailLines(t, r.Stdout)
	if len(ls) != 1 {
		t.Fatalf("tail printed %d lines, want 1:\n%s", len(ls), r.Stdout)
	}
	l := ls[0]
	if l.ID != ids[0] || l.Key == nil || *l.Key != "s1" || l.Source != "butter/cli" || l.Type != "butter.emit" || l.Topic != "ev.readings" || l.Time == "" {
		t.Errorf("tail line %+v, want id %s key s1", l, ids[0])
	}
	if !reflect.DeepEqual(l.Data, map[string]any{"t": 21.0}) || l.Headers["trace"] != "abc" {
		t.Errorf("tail data %#v headers %v", l.Data, l.Headers)
	}

	// -lines: one event per non-empty line, each with its own id, in
	// order (one key, one partition).
	r = butterStdin(t, "a\n{\"x\": 1}\n\nc\n", "emit", kb, "-lines", "-key", "k", "ev", "lines")
	if r.Code != 0 {
		t.Fatalf("emit -lines: exit %d\n%s", r.Code, r.Stderr)
	}
	ids = emittedIDs(t, r)
	if len(ids) != 3 || ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("emit -lines reported %q, want 3 distinct ids", r.Stderr)
	}
	r = butterStdin(t, "", "tail", kb, "ev", "lines")
	ls = tailLines(t, r.Stdout)
	if r.Code != 0 || len(ls) != 3 {
		t.Fatalf("tail: exit %d, %d lines, want 3\n%s\n%s", r.Code, len(ls), r.Stdout, r.Stderr)
	}
	wantData := []any{"a", map[string]any{"x": 1.0}, "c"}
	for i, l := range ls {
		if l.ID != ids[i] || !reflect.DeepEqual(l.Data, wantData[i]) || l.Offset != int64(i) {
			t.Errorf("line %d: id %s offset %d data %#v, want id %s offset %d data %#v", i, l.ID, l.Offset, l.Data, ids[i], i, wantData[i])
		}
	}
	// -from an offset, -from latest, -n.
	if ls := tailLines(t, butterStdin(t, "", "tail", kb, "-from", "1", "ev", "lines").Stdout); len(ls) != 2 || ls[0].ID != ids[1] {
		t.Errorf("tail -from 1: %+v, want the last two", ls)
	}
	if r := butterStdin(t, "", "tail", kb, "-from", "latest", "ev", "lines"); r.Code != 0 || r.Stdout != "" {
		t.Errorf("tail -from latest: exit %d, printed %q, want nothing", r.Code, r.Stdout)
	}
	if ls := tailLines(t, butterStdin(t, "", "tail", kb, "-n", "2", "ev", "lines").Stdout); len(ls) != 2 {
		t.Errorf("tail -n 2: %d lines", len(ls))
	}
	if ls := tailLines(t, butterStdin(t, "", "tail", kb, "-from", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "ev", "lines").Stdout); len(ls) != 3 {
		t.Errorf("tail -from an hour ago: %d lines, want 3", len(ls))
	}

	// Without a value or -lines, standard input is one value.
	if r := butterStdin(t, "line1\nline2\n", "emit", kb, "ev", "whole"); r.Code != 0 {
		t.Fatalf("emit from stdin: exit %d\n%s", r.Code, r.Stderr)
	}
	if v := string(readAll(t, addr, "ev.whole", 1)[0].Value); v != "line1\nline2\n" {
		t.Errorf("emit from stdin wrote %q", v)
	}

	// Records not written by emit: a pool's emit (no content-type, text)
	// and a bare record (no headers, no ce_id, binary value).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := []*kgo.Record{
		broker.NewEvent("ev.raw", []byte("k"), []byte("not json"), "in-1/emit", "butter/ev/f", "butter.emit"),
		{Topic: "ev.raw", Key: []byte("k"), Value: []byte{0xff, 0xfe}},
	}
	if err := cl.ProduceSync(ctx, raw...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r = butterStdin(t, "", "tail", kb, "ev", "raw")
	ls = tailLines(t, r.Stdout)
	if len(ls) != 2 || ls[0].ID != "in-1/emit" || ls[0].Data != "not json" || ls[0].Source != "butter/ev/f" {
		t.Fatalf("tail of a pool's record: %s", r.Stdout)
	}
	if want := fmt.Sprintf("ev.raw-%d-%d", raw[1].Partition, raw[1].Offset); ls[1].ID != want || !strings.Contains(r.Stdout, `"data_base64":"//4="`) {
		t.Errorf("tail of a bare record: id %s (want %s): %s", ls[1].ID, want, r.Stdout)
	}
	// A transaction's records end with its commit or abort marker, a
	// control record: tail without -f still ends there, and prints
	// neither the markers nor an aborted record (read_committed).
	tx, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("emit-tail-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, broker.NewEvent("ev.txn", []byte("k"), []byte(`"in a transaction"`), "tx-1", "test", "test")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// An aborted transaction after it: not shown, and tail still ends.
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, broker.NewEvent("ev.txn", []byte("k"), []byte(`"aborted"`), "tx-2", "test", "test")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	r = butterStdin(t, "", "tail", kb, "ev", "txn")
	if ls := tailLines(t, r.Stdout); r.Code != 0 || len(ls) != 1 || ls[0].ID != "tx-1" || ls[0].Data != "in a transaction" {
		t.Errorf("tail of a committed transaction: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// An empty topic: tail ends at once.
	if r := butterStdin(t, "", "tail", kb, "ev", "empty"); r.Code != 0 || r.Stdout != "" {
		t.Errorf("tail of an empty topic: exit %d, %q", r.Code, r.Stdout)
	}
}

// TestTailFollow: tail -f prints the records there when it started and
// then a record emitted after that, and ends at an interrupt.
func TestTailFollow(t *testing.T) {
	addr, _ := eventsBroker(t, "follow")
	kb := "-kafka-brokers=" + addr
	r := butterStdin(t, "", "emit", kb, "ev", "follow", `"first"`)
	if r.Code != 0 {
		t.Fatalf("emit: exit %d\n%s", r.Code, r.Stderr)
	}
	cmd := exec.Command(e2etest.Bin(), "tail", kb, "-f", "ev", "follow")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan tailLine)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l tailLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	next := func(what string) tailLine {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: tail -f ended: %s", what, stderr.String())
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: tail -f printed nothing in 30s: %s", what, stderr.String())
		}
		return tailLine{}
	}
	if l := next("the record there at start"); l.Data != "first" {
		t.Fatalf("first line %+v", l)
	}
	// tail has read up to the end; a record emitted now comes after it.
	r = butterStdin(t, "", "emit", kb, "-key", "later", "ev", "follow", `"second"`)
	ids := emittedIDs(t, r)
	if r.Code != 0 || len(ids) != 1 {
		t.Fatalf("emit: exit %d\n%s", r.Code, r.Stderr)
	}
	if l := next("the record emitted later"); l.Data != "second" || l.ID != ids[0] {
		t.Fatalf("second line %+v, want id %s", l, ids[0])
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tail -f after an interrupt: %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail -f still running 30s after an interrupt")
	}
}

// TestEmitTailErrors: an unknown stream is an error naming the topic and
// how it is created, and nothing creates it; bad options are usage
// errors that write nothing.
func TestEmitTailErrors(t *testing.T) {
	addr, cl := eventsBroker(t, "readings")
	kb := "-kafka-brokers=" + addr
	for _, args := range [][]string{{"emit", kb, "ev", "nosuch", "x"}, {"tail", kb, "ev", "nosuch"}, {"tail", kb, "-f", "ev", "nosuch"}} {
		r := butterStdin(t, "", args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "topic ev.nosuch") || !strings.Contains(r.Stderr, "butter broker -dev") || !strings.Contains(r.Stderr, addr) {
			t.Errorf("%v: exit %d, stderr %q: want 1 and the missing topic", args[0], r.Code, r.Stderr)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if td.Has("ev.nosuch") {
		t.Error("emit or tail created ev.nosuch")
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"emit", kb, "-header", "ce_id=1", "ev", "readings", "x"}, 2, "ce_id is set by Butter"},
		{[]string{"emit", kb, "-header", "novalue", "ev", "readings", "x"}, 2, "give NAME=VALUE"},
		{[]string{"emit", kb, "-lines", "ev", "readings", "x"}, 2, "give no value"},
		{[]string{"emit", kb, "ev"}, 2, "give the project and the stream"},
		{[]string{"emit", kb, "-content-type", "not a type", "ev", "readings", "x"}, 2, "-content-type"},
		{[]string{"tail", kb, "-from", "soon", "ev", "readings"}, 2, `-from="soon"`},
		{[]string{"tail", kb, "-n", "-1", "ev", "readings"}, 2, "-n=-1"},
		{[]string{"emit", "-kafka-brokers=", "ev", "readings", "x"}, 1, "no Kafka brokers"},
		{[]string{"emit", "-kafka-brokers=127.0.0.1:1", "ev", "readings", "x"}, 1, "listing topic ev.readings at 127.0.0.1:1"},
		{[]string{"tail", "-kafka-brokers=127.0.0.1:1", "ev", "readings"}, 1, "listing topic ev.readings at 127.0.0.1:1"},
		{[]string{"emit", "-help"}, 0, "Usage: butter emit"},
		{[]string{"tail", "-help"}, 0, "-from=first"},
	} {
		cmd := exec.Command(e2etest.Bin(), c.args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), broker.EnvBrokers+"=")
		r := e2etest.Run(t, cmd)
		if r.Code != c.code || !strings.Contains(r.Stdout+r.Stderr, c.out) {
			t.Errorf("%v: exit %d, want %d and %q:\n%s%s", c.args, r.Code, c.code, c.out, r.Stdout, r.Stderr)
		}
	}
	if recs := tailLines(t, butterStdin(t, "", "tail", kb, "ev", "readings").Stdout); len(recs) != 0 {
		t.Errorf("the refused emits wrote %d records", len(recs))
	}
}
