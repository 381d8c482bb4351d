package mqtt

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/hashicorp/go-hclog"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultPort is MQTT's port, which Broker takes when it is free.
const DefaultPort = 1883

// Broker is an embedded MQTT broker (mochi-mqtt, MQTT 3.1.1 and 5) for
// `butter dev`: in memory, anonymous, on one TCP listener. Connectors that
// declare no address use it there; it is not meant for production (no
// persistence, no authentication), and Nomad deployments give every MQTT
// connector its broker's address.
type Broker struct {
	srv *mochi.Server
	// Addr is the listener's host:port; URL is tcp://Addr, what a
	// connector's address option takes.
	Addr, URL string
}

// StartBroker starts an embedded broker on host:port; port 0 takes
// DefaultPort when it is free and any free port otherwise. log gets the
// broker's warnings and errors.
func StartBroker(host string, port int, log hclog.Logger) (*Broker, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	if port == 0 {
		// Take 1883 when nothing listens there, so devices and
		// mosquitto_pub reach it without -p; otherwise any port.
		addr = net.JoinHostPort(host, fmt.Sprint(DefaultPort))
		if l, err := net.Listen("tcp", addr); err != nil {
			addr = net.JoinHostPort(host, "0")
		} else {
			l.Close()
		}
	}
	// A listener of our own, so that port 0's choice is known before the
	// broker serves.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: listen on %s: %w", addr, err)
	}
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	if err := srv.AddListener(listeners.NewNet("dev", ln)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	a := ln.Addr().String()
	return &Broker{srv: srv, Addr: a, URL: "tcp://" + a}, nil
}

// Close disconnects every client and stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }
