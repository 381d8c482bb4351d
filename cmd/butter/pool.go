package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/butterfn/butter/plugins/runtime"
	"github.com/butterfn/butter/sandbox"
	"github.com/butterfn/butter/sdk"
	"github.com/butterfn/butter/secrets"
	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
)

type poolCommand struct{ ui cli.Ui }

func (c *poolCommand) Synopsis() string { return "Run a pool (started by the butter task driver)" }

func (c *poolCommand) Help() string {
	return trimHelp(`
Usage: butter pool -config <file> [options]

  Runs a pool: the process that hosts a task's functions and serves their
  invoke endpoint. The butter task driver starts it in each allocation; it
  can also run by hand for debugging.

  On SIGTERM or SIGINT it drains: new calls are refused, calls in flight
  get -drain to finish, then the instances stop.

Options:

  -config=<file>
    The pool config, as JSON in the task config's shape (the driver writes it).

  -dir=<dir>
    The task directory that bundle paths are relative to. Default: the
    current directory.

  -listen=127.0.0.1:0
    Where to serve the invoke endpoint. Port 0 picks a free port; the address
    is printed. $NOMAD_PORT_invoke, when set, supplies the port.

  -drain=10s
    How long calls in flight may take to finish on shutdown.

  -idle=30s
    How long an instance above its function's minimum may stay idle.

  -kafka-brokers=<host:port,...>
    The Kafka cluster that carries the pool's streams. Defaults to
    $BUTTER_KAFKA_BROKERS. Needed when a function has a stream trigger.

  -session-timeout=10s
    How long a crashed pool keeps its stream partitions before other pools
    take them over.

  -secrets-dir=<dir>
    Where Nomad renders the functions' secrets, one JSON file per function
    (docs/secrets.md). Default: $NOMAD_SECRETS_DIR/butter, or
    <dir>/secrets/butter.

  On SIGHUP it re-reads the secrets, and replaces the instances of each
  function whose secrets changed, without failing a call.
`)
}

func (c *poolCommand) Run(args []string) int {
	fs := newFlagSet("pool")
	cfgPath := fs.String("config", "", "")
	dir := fs.String("dir", ".", "")
	listen := fs.String("listen", "", "")
	drain := fs.Duration("drain", 10*time.Second, "")
	idle := fs.Duration("idle", 30*time.Second, "")
	kafkaBrokers := fs.String("kafka-brokers", "", "")
	session := fs.Duration("session-timeout", 10*time.Second, "")
	secretsDir := fs.String("secrets-dir", "", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *cfgPath == "" {
		err = errors.New("-config is required")
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	if *listen == "" {
		*listen = "127.0.0.1:0"
		if port := os.Getenv("NOMAD_PORT_invoke"); port != "" {
			ip := os.Getenv("NOMAD_IP_invoke")
			if ip == "" {
				ip = "127.0.0.1"
			}
			*listen = net.JoinHostPort(ip, port)
		}
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "pool", Output: os.Stderr, Level: hclog.Info})
	cfg, err := pool.LoadConfig(*cfgPath)
	if err != nil {
		log.Error("cannot load the config", "error", err)
		return exitInvalid
	}
	for i := range cfg.Functions {
		if b := cfg.Functions[i].Bundle; b != "" && !filepath.IsAbs(b) {
			cfg.Functions[i].Bundle = filepath.Join(*dir, b)
		} else if b == "" {
			cfg.Functions[i].Bundle = *dir
		}
	}
	limits := runtime.SystemLimits()
	if err := limits.Available(); err != nil {
		log.Warn("per-instance memory and process limits are off", "reason", err)
	}
	sdks, err := sdk.Install(filepath.Join(os.TempDir(), "butter-sdk"))
	if err != nil {
		log.Error("cannot install the SDKs", "error", err)
		return exitInvalid
	}
	if *secretsDir == "" {
		*secretsDir = filepath.Join(*dir, "secrets", "butter")
		if d := os.Getenv("NOMAD_SECRETS_DIR"); d != "" {
			*secretsDir = filepath.Join(d, "butter")
		}
	}
	confine := poolSandbox(*dir, sdks)
	p, err := pool.New(cfg, func(fn string) io.Writer {
		return log.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, pool.WithLogger(log), pool.WithSDKs(sdks), pool.WithStopGrace(*drain), pool.WithIdleTimeout(*idle), pool.WithLimits(limits), pool.WithSessionTimeout(*session),
		pool.WithSecrets(secrets.Rendered{Dir: *secretsDir}), pool.WithSandbox(confine))
	if err != nil {
		log.Error("cannot create the pool", "error", err)
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.Start(ctx); err != nil {
		log.Warn("some minimum instances did not start", "error", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: re-reading the secrets")
				if err := p.ReloadSecrets(ctx); err != nil {
					log.Error("secrets not reloaded", "error", err)
				}
			}
		}
	}()
	if hasStreams(cfg) {
		kcfg, err := kafkaConfig(*kafkaBrokers, cfg.Kafka, cfg.Project, filepath.Dir(*secretsDir))
		if err != nil {
			log.Error("cannot configure Kafka", "error", err)
			p.Stop()
			return exitInvalid
		}
		if err := p.StartStreams(ctx, kcfg); err != nil {
			log.Error("cannot consume the pool's streams", "error", err)
			p.Stop()
			return exitInvalid
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "addr", *listen, "error", err)
		p.Stop()
		return exitInvalid
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("pool serving", "addr", ln.Addr().String(), "project", cfg.Project, "pool", cfg.Pool, "functions", len(cfg.Functions))
	fmt.Printf("pool listening on %s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("server failed", "error", err)
	}
	log.Info("draining", "grace", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	_ = srv.Shutdown(sctx) // waits for calls in flight, up to the grace
	p.Stop()
	log.Info("pool stopped")
	return exitOK
}

// hasStreams says whether the pool needs Kafka: a function consumes a
// stream, produces an output, keeps state, or the project declares streams
// its functions may emit to.
func hasStreams(cfg *pool.Config) bool {
	if len(cfg.Topics) > 0 {
		return true
	}
	for _, f := range cfg.Functions {
		if len(f.Streams) > 0 || f.Output != "" || f.State != nil {
			return true
		}
	}
	return false
}

// kafkaConfig picks how to reach Kafka: the -kafka-brokers flag, then the
// project's kafka block, then $BUTTER_KAFKA_BROKERS. The block's SASL
// password comes from the environment variable it names, or is decrypted
// with the project's Vault transit key.
func kafkaConfig(flag string, block *pool.KafkaConfig, project, secretsDir string) (broker.Config, error) {
	switch {
	case flag != "":
		return broker.Config{Brokers: strings.Split(flag, ",")}, nil
	case block != nil:
		c := broker.Config{Brokers: block.Brokers, SASLMechanism: block.SASLMechanism, SASLUser: block.SASLUsername}
		if block.TLS {
			c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		switch {
		case block.SASLMechanism == "":
		case block.SASLPasswordEncrypted != "":
			// Only the pool decrypts: the spec, the control plane and the
			// job hold the ciphertext.
			vc, err := secrets.TaskClient(secretsDir)
			if err != nil {
				return c, fmt.Errorf("the kafka block's SASL password is encrypted: %w", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if c.SASLPassword, err = secrets.Decrypt(ctx, vc, project, block.SASLPasswordEncrypted); err != nil {
				return c, fmt.Errorf("the kafka block's SASL password: %w", err)
			}
		default:
			c.SASLPassword = os.Getenv(block.SASLPasswordEnv)
			if c.SASLPassword == "" {
				return c, fmt.Errorf("the kafka block's SASL password is read from $%s, which is empty in the pool's environment", block.SASLPasswordEnv)
			}
		}
		return c, nil
	}
	return broker.ConfigFromEnv(), nil
}

// poolSandbox says what the instances of a pool with secrets cannot see.
// Under Nomad that is every allocation's directory (the alloc root),
// this task's secrets directory included, except this task's local and
// tmp directories and the allocation's shared directory; elsewhere, the
// task directory's secrets/. The SDKs and the Go build cache stay usable.
func poolSandbox(dir string, sdks *runtime.SDKs) sandbox.Config {
	c := sandbox.Config{Hide: []string{filepath.Join(dir, "secrets")}}
	if allocShared := os.Getenv("NOMAD_ALLOC_DIR"); allocShared != "" {
		allocRoot := filepath.Dir(filepath.Dir(allocShared))
		c.Hide = []string{allocRoot}
		c.Allow = append(c.Allow, allocShared)
		if d := os.Getenv("NOMAD_TASK_DIR"); d != "" {
			c.Allow = append(c.Allow, d, filepath.Join(filepath.Dir(d), "tmp"))
		}
	}
	for _, p := range []string{filepath.Dir(sdks.Node), filepath.Dir(sdks.Python), sdks.GoSDK, sdks.BuildDir, os.TempDir()} {
		if p != "" && p != "." {
			c.Allow = append(c.Allow, p)
		}
	}
	return c
}
