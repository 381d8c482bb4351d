package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/cli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type executionsCommand struct{ ui cli.Ui }

func (c *executionsCommand) Synopsis() string { return "List or show a function's recorded executions" }
func (c *executionsCommand) Help() string {
	return trimHelp(`
Usage: butter executions [options] <project>/<function> [invocation]

  Lists the executions the function's execution log keeps (a function with
  an executions block: docs/observability.md, "Execution log"), newest
  last: time, invocation, duration and error. Given an invocation, prints
  that execution's whole record as JSON: its input, metadata, state before
  and after, output, emits, error and duration, with the redacted fields
  and the function's secrets replaced by "[redacted]". Replay it with

    butter executions iot/detect 7f3a… > exec.json
    butter invoke -local -replay exec.json examples/iot detect

  The log keeps what its keep tiers say, counted from now: every execution
  up to the first tier's age, then one per the next tier's rate up to its
  age, and so on. It reads the log's topics, <project>._executions.
  <function>.<k>, on the project's Kafka.

Options:

  -since=DURATION|TIME
    Only executions this recent (10m, 2h) or since this RFC 3339 time.

  -errors
    Only the executions that failed.

  -json
    List as JSON lines, each a whole record.
` + kafkaHelp)
}

func (c *executionsCommand) Run(args []string) int {
	fs := newFlagSet("executions")
	kafka := fs.String("kafka-brokers", "", "")
	since := fs.String("since", "", "")
	onlyErrors := fs.Bool("errors", false, "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, args)
	switch {
	case err != nil:
	case len(pos) == 0:
		err = errors.New("give <project>/<function>")
	case len(pos) > 2:
		return usageError(c.ui, c.Help(), nil, pos, 2)
	}
	var project, function, invocation string
	if err == nil {
		var ok bool
		project, function, ok = strings.Cut(pos[0], "/")
		switch {
		case !ok || !names.Valid(project) || !names.Valid(function):
			err = fmt.Errorf("%q: give <project>/<function>, each a name of %s", pos[0], names.RuleText)
		case len(pos) == 2:
			invocation = pos[1]
		}
	}
	var from time.Time
	if err == nil && *since != "" {
		var s startAt
		if s, err = parseSince(*since, time.Now()); err == nil {
			from = s.time
		}
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	execs, err := readExecutions(ctx, *kafka, project, function, from, time.Now())
	if err != nil {
		return failed(c.ui, err)
	}
	if invocation != "" {
		for _, e := range execs {
			if e.Invocation == invocation {
				b, _ := json.MarshalIndent(e, "", "  ")
				c.ui.Output(string(b))
				return exitOK
			}
		}
		return failed(c.ui, fmt.Errorf("the execution log of %s/%s keeps no execution %q: it was thinned out or never recorded (butter executions %s/%s lists those kept)", project, function, invocation, project, function))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(w, "TIME\tINVOCATION\tDURATION\tERROR")
	}
	for _, e := range execs {
		if *onlyErrors && e.Error == nil {
			continue
		}
		if *asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintln(w, string(b))
			continue
		}
		fail := "-"
		if e.Error != nil {
			fail = e.Error.Type + ": " + e.Error.Message
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339Nano), e.Invocation, time.Duration(e.DurationMS*float64(time.Millisecond)).Round(time.Microsecond), fail)
	}
	if err := w.Flush(); err != nil {
		return failed(c.ui, err)
	}
	return exitOK
}

// readExecutions reads the execution log of project/function: every
// tier's topic, keeping of each what its tier keeps as of now (keptBy),
// one record per invocation, oldest first, none before from.
func readExecutions(ctx context.Context, brokers, project, function string, from, now time.Time) ([]pool.Execution, error) {
	kcfg, err := broker.Resolve(ctx, brokers, nil, nil)
	if err != nil {
		return nil, err
	}
	opts, err := kcfg.Opts()
	if err != nil {
		return nil, err
	}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer admin.Close()
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	tds, err := kadm.NewClient(admin).ListTopics(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("listing the topics at %s: %w", strings.Join(kcfg.Brokers, ","), kcfg.Explain(err))
	}
	prefix := strings.TrimSuffix(pool.ExecTopic(project, function, 0), "0")
	var topics []string
	for _, name := range tds.Names() {
		if strings.HasPrefix(name, prefix) {
			topics = append(topics, name)
		}
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("function %s of project %q has no execution log at %s (no topic %s<k>): give it an executions block and deploy it; is this the project's Kafka (-kafka-brokers, $BUTTER_KAFKA_BROKERS)?", function, project, strings.Join(kcfg.Brokers, ","), prefix)
	}
	var recs []*kgo.Record
	for _, t := range topics {
		err := readTopic(ctx, kcfg, opts, admin, t, startAt{kind: "first"}, false, func(r *kgo.Record) bool {
			recs = append(recs, r)
			return false
		}, func() error { return nil })
		if err != nil {
			return nil, err
		}
	}
	byID := map[string]pool.Execution{}
	for _, e := range keptBy(recs, now) {
		if e.Time.Before(from) {
			continue
		}
		byID[e.Invocation] = e
	}
	out := make([]pool.Execution, 0, len(byID))
	for _, e := range byID {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// keptBy applies the tiers' rules, as each record's headers give its
// tier's, to the records read: a record of a tier is kept while it is no
// older than the tier's age and, in a sampled tier, it is the last of its
// key (its time bucket) in its topic, as compaction leaves it.
func keptBy(recs []*kgo.Record, now time.Time) []pool.Execution {
	last := map[string]int{} // topic + key → index of its last record
	for i, r := range recs {
		if broker.Header(r, pool.HeaderExecOnePer) != "" {
			last[r.Topic+"\x00"+string(r.Key)] = i
		}
	}
	var out []pool.Execution
	for i, r := range recs {
		if broker.Header(r, pool.HeaderExecOnePer) != "" && last[r.Topic+"\x00"+string(r.Key)] != i {
			continue
		}
		age, err := time.ParseDuration(broker.Header(r, pool.HeaderExecAge))
		if err != nil {
			continue
		}
		var e pool.Execution
		if json.Unmarshal(r.Value, &e) != nil || now.Sub(e.Time) > age {
			continue
		}
		out = append(out, e)
	}
	return out
}
