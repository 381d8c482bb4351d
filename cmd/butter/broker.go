package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/hcl/spec"
	"github.com/hashicorp/cli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type brokerCommand struct{ ui cli.Ui }

func (c *brokerCommand) Synopsis() string { return "Run the embedded Kafka-protocol broker" }

func (c *brokerCommand) Help() string {
	return trimHelp(`
Usage: butter broker -dev [options] [dir]

  Runs an embedded Kafka-protocol broker (franz-go's kfake) on 127.0.0.1,
  for development and tests: Butter's pools and any Kafka client reach it
  over TCP. With a project dir, the project's streams are created as topics
  (partitions, retention, compaction from their stream blocks).

  Records and committed offsets persist in -data-dir, so they survive a
  restart. Ctrl-C stops it.

Options:

  -dev
    Required: this broker is for development, not production (no
    replication, no quotas). Production points Butter at your Kafka.

  -port=9092
    The port to listen on; 0 picks a free one.

  -data-dir=.butter/kafka
    Where records and offsets are kept. Empty keeps everything in memory.
`)
}

func (c *brokerCommand) Run(args []string) int {
	fs := newFlagSet("broker")
	dev := fs.Bool("dev", false, "")
	port := fs.Int("port", 9092, "")
	dataDir := fs.String("data-dir", ".butter/kafka", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && !*dev {
		err = errors.New("only the embedded development broker exists: pass -dev")
	}
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	var topics []broker.Topic
	if len(pos) == 1 {
		proj, rep := spec.Load(pos[0])
		if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
			return exitInvalid
		}
		for _, s := range proj.Streams {
			topics = append(topics, broker.Topic{Name: names.Topic(proj.Name, s.Name), Partitions: s.Partitions, Retention: s.Retention, Compact: s.Compact})
		}
	}
	d, err := broker.StartDev(*port, *dataDir)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer d.Close()
	if len(topics) > 0 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(d.Addr))
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = broker.EnsureTopics(ctx, kadm.NewClient(cl), topics)
		cancel()
		cl.Close()
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		for _, t := range topics {
			c.ui.Output(fmt.Sprintf("  topic %s (%d partitions)", t.Name, t.Partitions))
		}
	}
	c.ui.Output(fmt.Sprintf("broker listening on %s (data dir %q); export %s=%s", d.Addr, *dataDir, broker.EnvBrokers, d.Addr))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return exitOK
}
