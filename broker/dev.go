package broker

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Dev is the embedded Kafka-protocol broker (franz-go's kfake) that
// `butter broker -dev`, `butter dev` and the tests run. It speaks the real
// wire protocol over TCP on 127.0.0.1, so the real client is exercised end
// to end. With a data dir, its topics, records and committed offsets
// survive a restart.
type Dev struct {
	cluster *kfake.Cluster
	// Addr is the broker's host:port.
	Addr string
}

// SASLUser is a login the embedded broker accepts when it requires SASL.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	User      string
	Password  string
}

// StartDev starts the embedded broker. Port 0 picks a free port. An empty
// dataDir keeps everything in memory. With users, the broker requires a
// SASL login from every client, one of users (each may do anything: they
// are kfake superusers).
func StartDev(port int, dataDir string, users ...SASLUser) (*Dev, error) {
	opts := []kfake.Opt{kfake.Ports(port), kfake.DefaultNumPartitions(3)}
	if len(users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
	}
	if dataDir != "" {
		// SyncWrites: an acknowledged record is on disk, so a killed dev
		// broker loses nothing it acknowledged.
		opts = append(opts, kfake.DataDir(dataDir), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start the embedded broker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("the embedded broker has no listener")
	}
	return &Dev{cluster: c, Addr: addrs[0]}, nil
}

// Port returns the port the broker listens on.
func (d *Dev) Port() int {
	_, p, _ := net.SplitHostPort(d.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Config returns the Config that reaches this broker.
func (d *Dev) Config() Config { return Config{Brokers: []string{d.Addr}} }

// Close stops the broker, flushing its data dir.
func (d *Dev) Close() { d.cluster.Close() }
