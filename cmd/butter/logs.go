package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/cli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type logsCommand struct{ ui cli.Ui }

func (c *logsCommand) Synopsis() string { return "Print the log lines of a project's functions" }
func (c *logsCommand) Help() string {
	return trimHelp(`
Usage: butter logs [options] <project>[/<function>]

  Prints what a project's functions printed and logged (ctx.log), from the
  project's log topic, <project>._logs, where every pool of the project
  sends each line (docs/observability.md, "Logs"):

    2026-12-04T00:50:00.123Z [INFO]  ingest: reading accepted  invocation=47c0… trace_id=4bf9…

  A line carries the invocation (the event's or request's id) and trace it
  belongs to when its instance ran that one call alone, and always for a
  ctx.log call. The topic keeps three days of lines; a pool ships at most
  1,000 lines a second per function (the rest stay in the pool's own log,
  counted in butter_log_lines_dropped_total).

Options:

  -since=DURATION|TIME
    Start at lines this recent (10m, 2h) or at this RFC 3339 time. Default:
    the oldest line kept.

  -f
    Follow: keep printing new lines until interrupted.

  -invocation=ID
    Only the lines of this invocation (the X-Request-Id of an HTTP call, or
    a stream event's id).

  -json
    Print each line as its record: one JSON object a line.
` + kafkaHelp)
}

func (c *logsCommand) Run(args []string) int {
	fs := newFlagSet("logs")
	kafka := fs.String("kafka-brokers", "", "")
	since := fs.String("since", "", "")
	follow := fs.Bool("f", false, "")
	invocation := fs.String("invocation", "", "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, args)
	switch {
	case err != nil:
	case len(pos) == 0:
		err = errors.New("give the project, or project/function")
	case len(pos) > 1:
		return usageError(c.ui, c.Help(), nil, pos, 1)
	}
	start := startAt{kind: "first"}
	if err == nil && *since != "" {
		start, err = parseSince(*since, time.Now())
	}
	var project, function string
	if err == nil {
		project, function, _ = strings.Cut(pos[0], "/")
		switch {
		case !names.Valid(project):
			err = fmt.Errorf("project %q: a name is %s", project, names.RuleText)
		case function != "" && !names.Valid(function):
			err = fmt.Errorf("function %q: a name is %s", function, names.RuleText)
		}
	}
	if err != nil {
		return usageError(c.ui, c.Help(), err, nil, 1)
	}
	topic := pool.LogTopic(project)

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
	if err := logTopicExists(ctx, kcfg, admin, project, topic); err != nil {
		return failed(c.ui, err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	err = readTopic(ctx, kcfg, opts, admin, topic, start, *follow, func(r *kgo.Record) bool {
		if function != "" && string(r.Key) != function {
			return false
		}
		var l pool.LogRecord
		if json.Unmarshal(r.Value, &l) != nil {
			return false
		}
		if *invocation != "" && l.Invocation != *invocation {
			return false
		}
		if *asJSON {
			_, _ = out.Write(append(r.Value, '\n'))
			return false
		}
		_, _ = out.WriteString(formatLogLine(l))
		return false
	}, out.Flush)
	if err != nil {
		_ = out.Flush()
		return failed(c.ui, err)
	}
	return exitOK
}

// formatLogLine is a log record as butter logs prints it, as hclog would.
func formatLogLine(l pool.LogRecord) string {
	var b strings.Builder
	lv := strings.ToUpper(l.Level)
	fmt.Fprintf(&b, "%s %-7s %s: %s", l.Time.Format("2006-01-02T15:04:05.000Z07:00"), "["+lv+"]", l.Function, l.Message)
	if l.Invocation != "" {
		b.WriteString("  invocation=" + l.Invocation)
	}
	if l.TraceID != "" {
		b.WriteString(" trace_id=" + l.TraceID)
	}
	b.WriteByte('\n')
	return b.String()
}

// parseSince reads -since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (startAt, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return startAt{kind: "time", time: now.Add(-d)}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return startAt{kind: "time", time: t}, nil
	}
	return startAt{}, fmt.Errorf("-since=%q: give a duration such as 10m or 2h, or an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
}

// logTopicExists says, when the project's log topic is missing, why and
// what to do.
func logTopicExists(ctx context.Context, kcfg broker.Config, cl *kgo.Client, project, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing topic %s at %s: %w", topic, strings.Join(kcfg.Brokers, ","), kcfg.Explain(err))
	}
	if !td.Has(topic) {
		return fmt.Errorf("project %q has no log topic (%s) at %s: its pools create it when they start connected to Kafka; is the project deployed, and are these its brokers (-kafka-brokers, $BUTTER_KAFKA_BROKERS)?", project, topic, strings.Join(kcfg.Brokers, ","))
	}
	return nil
}
