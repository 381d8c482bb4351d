package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/butterfn/butter/names"
	"os"
	"os/signal"
	"strings"
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

  -sasl-users-file=PATH
    Require a SASL login from every client. The file has one user a line,
    "MECHANISM USERNAME PASSWORD" (MECHANISM is PLAIN, SCRAM-SHA-256 or
    SCRAM-SHA-512; blank lines and lines starting with # are skipped).
    On Nomad, render it from a Nomad variable with a template block
    (jobs/platform/broker.nomad.hcl).

  -sasl-user=MECHANISM:USERNAME
    Require a SASL login, and accept this user, whose password is
    $BUTTER_BROKER_SASL_PASSWORD. May be repeated (every such user has
    that password) and combined with -sasl-users-file.
` + varHelp)
}

func (c *brokerCommand) Run(args []string) int {
	fs := newFlagSet("broker")
	vf := addVarFlags(fs)
	dev := fs.Bool("dev", false, "")
	port := fs.Int("port", 9092, "")
	dataDir := fs.String("data-dir", ".butter/kafka", "")
	usersFile := fs.String("sasl-users-file", "", "")
	var userFlags stringList
	fs.Var(&userFlags, "sasl-user", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && !*dev {
		err = errors.New("only the embedded development broker exists: pass -dev")
	}
	if err != nil || len(pos) > 1 {
		return usageError(c.ui, c.Help(), err, pos, 1)
	}
	var topics []broker.Topic
	if len(pos) == 1 {
		proj, rep := spec.Load(pos[0], vf.options()...)
		if err := rep.WriteText(os.Stderr); err != nil || proj == nil {
			return exitInvalid
		}
		for _, s := range proj.Streams {
			topics = append(topics, broker.Topic{Name: names.Topic(proj.Name, s.Name), Partitions: s.Partitions, Retention: s.Retention, Compact: s.Compact})
		}
	}
	users, err := saslUsers(*usersFile, userFlags, os.Getenv(envBrokerSASLPassword))
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	d, err := broker.StartDev(*port, *dataDir, users...)
	if err != nil {
		c.ui.Error("Error: " + err.Error())
		return exitInvalid
	}
	defer d.Close()
	if len(topics) > 0 {
		cfg := d.Config()
		if len(users) > 0 {
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = users[0].Mechanism, users[0].User, users[0].Password
		}
		opts, err := cfg.Opts()
		if err != nil {
			c.ui.Error("Error: " + err.Error())
			return exitInvalid
		}
		cl, err := kgo.NewClient(opts...)
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
	if len(users) > 0 {
		var names []string
		for _, u := range users {
			names = append(names, u.Mechanism+":"+u.User)
		}
		c.ui.Output(fmt.Sprintf("SASL required; users %s: clients set $%s, $%s and $%s", strings.Join(names, ", "), broker.EnvSASLMechanism, broker.EnvSASLUsername, broker.EnvSASLPassword))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return exitOK
}

// envBrokerSASLPassword is the password of the -sasl-user users.
const envBrokerSASLPassword = "BUTTER_BROKER_SASL_PASSWORD"

// saslUsers reads the broker's SASL users from a users file and from
// -sasl-user MECHANISM:USERNAME flags, whose password is password. Every
// mistake names the file and line or the flag.
func saslUsers(file string, flags []string, password string) ([]broker.SASLUser, error) {
	var users []broker.SASLUser
	mech := func(m string) (string, bool) {
		m = strings.ToUpper(m)
		switch m {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			return m, true
		}
		return m, false
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-sasl-users-file: %w", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 3 {
				return nil, fmt.Errorf("%s:%d: want \"MECHANISM USERNAME PASSWORD\", got %d fields", file, i+1, len(f))
			}
			m, ok := mech(f[0])
			if !ok {
				return nil, fmt.Errorf("%s:%d: mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", file, i+1, f[0])
			}
			users = append(users, broker.SASLUser{Mechanism: m, User: f[1], Password: f[2]})
		}
		if len(users) == 0 {
			return nil, fmt.Errorf("-sasl-users-file %s holds no user: add lines \"MECHANISM USERNAME PASSWORD\"", file)
		}
	}
	for _, fl := range flags {
		m, u, found := strings.Cut(fl, ":")
		m, ok := mech(m)
		if !found || u == "" || !ok {
			return nil, fmt.Errorf("-sasl-user %q: want MECHANISM:USERNAME, MECHANISM being PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", fl)
		}
		if password == "" {
			return nil, fmt.Errorf("-sasl-user %s: $%s is empty: it holds the password of -sasl-user users", fl, envBrokerSASLPassword)
		}
		users = append(users, broker.SASLUser{Mechanism: m, User: u, Password: password})
	}
	return users, nil
}
