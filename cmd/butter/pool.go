package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
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

  -instance-id=<id>
    Names this pool among the pools running the same functions: unique
    among them, and the same when the pool restarts or is replaced.
    Stream consumers are static members of their consumer groups with it
    (a replacement takes the partitions back at once), and exactly-once
    stream triggers derive their Kafka transactional IDs from it, so a
    restarted pool aborts the transaction its predecessor left open at
    once. Defaults to $NOMAD_ALLOC_NAME; without either, no static
    membership, and a random transactional ID (a crashed pool's open
    transaction then waits for its timeout).

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
	// The pool's name among those running the same functions, stable
	// across restarts and replacements: Nomad's allocation name
	// ("<job>.<group>[<index>]"), which a replacement allocation keeps.
	instanceID := fs.String("instance-id", os.Getenv("NOMAD_ALLOC_NAME"), "")
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
	stopTracing, terr := startTracing("butter-pool", log)
	if terr != nil {
		log.Error("cannot start tracing", "error", terr)
		return exitInvalid
	}
	defer stopTracing()
	cfg, err := pool.LoadConfig(*cfgPath)
	if err != nil {
		log.Error("cannot load the config", "error", err)
		return exitInvalid
	}
	cfg.Resolve(*dir)
	// The pool logs what its limiter cannot enforce (pool.Warnings).
	limits := runtime.SystemLimits()
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
	confine := sandbox.ForTask(*dir, os.Getenv, filepath.Dir(sdks.Node), filepath.Dir(sdks.Python), sdks.GoSDK, sdks.BuildDir, os.TempDir())
	// Only the pool decrypts the kafka block's SASL password and the
	// connectors' encrypted credentials: the spec, the control plane and
	// the job hold the ciphertexts.
	decrypt := func(ctx context.Context, ciphertext string) (string, error) {
		vc, err := secrets.TaskClient(filepath.Dir(*secretsDir))
		if err != nil {
			return "", err
		}
		return secrets.Decrypt(ctx, vc, cfg.Project, ciphertext)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = cfg.Decrypt(dctx, decrypt)
	dcancel()
	if err != nil {
		log.Error("cannot decrypt the connectors' credentials", "error", err)
		return exitInvalid
	}
	p, err := pool.New(cfg, func(fn string) io.Writer {
		return log.Named(fn).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	}, pool.WithLogger(log), pool.WithSDKs(sdks), pool.WithStopGrace(*drain), pool.WithIdleTimeout(*idle), pool.WithLimits(limits), pool.WithSessionTimeout(*session), pool.WithInstanceID(*instanceID),
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
	if cfg.HasStreams() {
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		kcfg, err := broker.Resolve(kctx, *kafkaBrokers, cfg.Kafka, decrypt)
		cancel()
		if err != nil {
			log.Error("cannot configure Kafka", "error", err)
			p.Close()
			return exitInvalid
		}
		if err := p.StartStreams(ctx, kcfg); err != nil {
			log.Error("cannot consume the pool's streams", "error", err)
			p.Close()
			return exitInvalid
		}
	} else if kcfg, err := broker.Resolve(ctx, *kafkaBrokers, nil, nil); err == nil && len(kcfg.Brokers) > 0 {
		// No stream: Kafka only carries the functions' log lines, and a
		// pool that cannot reach it still serves.
		if err := p.StartLogs(kcfg); err != nil {
			log.Warn("the functions' log lines stay in this log: cannot ship them to Kafka", "error", err)
		}
	} else {
		log.Info("no Kafka brokers: the functions' log lines stay in this log (butter logs cannot read them)")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "addr", *listen, "error", err)
		p.Close()
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
	p.Close()
	log.Info("pool stopped")
	return exitOK
}
