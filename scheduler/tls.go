package scheduler

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/hashicorp/raft"
)

// TLSConfig turns on mutual TLS for a node's API and its Raft transport
// (docs/security.md). The zero value is plain HTTP and TCP.
type TLSConfig struct {
	// CAFile, CertFile and KeyFile are PEM files: the cluster's CA and
	// this server's certificate and key (`butter tls cert create
	// -server`). TLS is on when CertFile is set.
	CAFile, CertFile, KeyFile string
	// VerifyClient makes the API require a client certificate the CA
	// signed on every request but GET /v1/blobs/... (Nomad's artifact
	// getter presents none). The Raft transport always requires one.
	VerifyClient bool
	// VerifyServerHostname makes a node check that a peer, as a Raft
	// peer and as an API it calls, holds a server certificate: one for
	// ServerName. Without it any certificate of the CA is accepted there.
	VerifyServerHostname bool
	// ServerName is the name server certificates carry; empty is
	// server.global.butter (tlsutil.ServerName of the defaults).
	ServerName string
}

// Enabled says whether TLS is on.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// nodeTLS is a node's loaded TLS: what its listeners and its calls to
// peers use. nil when TLS is off.
type nodeTLS struct {
	cfg    TLSConfig
	loaded *tlsutil.Loaded
	// peerName is ServerName when VerifyServerHostname is set, else "".
	peerName string
	// peers is the HTTP transport of the node's calls to its peers,
	// shared so that connections are reused.
	peers *http.Transport
}

func loadTLS(cfg TLSConfig) (*nodeTLS, error) {
	if !cfg.Enabled() {
		if cfg.CAFile != "" || cfg.KeyFile != "" {
			return nil, errors.New("TLS: -tls-ca-file and -tls-key-file need -tls-cert-file")
		}
		return nil, nil
	}
	l, err := tlsutil.Files{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}.Load()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = tlsutil.ServerName(tlsutil.DefaultRegion, tlsutil.DefaultDomain)
	}
	n := &nodeTLS{cfg: cfg, loaded: l}
	if cfg.VerifyServerHostname {
		n.peerName = cfg.ServerName
		if err := l.Cert.Leaf.VerifyHostname(cfg.ServerName); err != nil {
			return nil, fmt.Errorf("TLS: -tls-cert-file %s is not for %s, which its peers check with -tls-verify-server-hostname: make it with butter tls cert create -server: %w", cfg.CertFile, cfg.ServerName, err)
		}
	}
	n.peers = http.DefaultTransport.(*http.Transport).Clone()
	n.peers.TLSClientConfig = l.PeerClientConfig(n.peerName)
	return n, nil
}

// scheme is the scheme of the node's API: https with TLS.
func (s *Server) scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// peerURL is the base URL of a peer's API from its node ID (host:port).
func (s *Server) peerURL(id string) string { return s.scheme() + "://" + id }

// peerClient is the HTTP client a node calls its peers with: its own
// certificate as the client certificate, the peer's checked against the
// CA (and its server name).
func (s *Server) peerClient(timeout time.Duration) *http.Client {
	if s.tls == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: s.tls.peers}
}

// requireClientCert refuses, with 403 and a message naming TLS, a
// request without a client certificate the CA signed (the handshake has
// already refused one the CA did not sign). GET and HEAD of
// /v1/blobs/... pass without one: Nomad's artifact getter fetches
// bundles there and cannot present a certificate (docs/security.md).
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			next.ServeHTTP(w, r)
			return
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/v1/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		writeErr(w, http.StatusForbidden, errors.New("TLS: this server requires a client certificate signed by the cluster's CA (-tls-verify-client); give one with -client-cert and -client-key or $BUTTER_CLIENT_CERT and $BUTTER_CLIENT_KEY (butter tls cert create -client)"))
	})
}

// StreamLayer is a raft.StreamLayer over mutual TLS: both ends present a
// certificate of the cluster's CA, and with a server name (the node's
// VerifyServerHostname) both check that the other's is a server
// certificate, so a client certificate cannot take part in Raft.
type StreamLayer struct {
	net.Listener
	dial *tls.Config
}

// NewStreamLayer listens on addr for Raft peers with l's certificate.
// serverName, when not empty, is the name peers' certificates must carry.
func NewStreamLayer(addr string, l *tlsutil.Loaded, serverName string) (*StreamLayer, error) {
	srv := &tls.Config{
		Certificates: []tls.Certificate{l.Cert},
		ClientCAs:    l.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	if serverName != "" {
		srv.VerifyConnection = func(cs tls.ConnectionState) error {
			return tlsutil.VerifyChain(l.Pool, cs, x509.ExtKeyUsageClientAuth, serverName)
		}
	}
	// Peers dial the address the node advertises, which is this one (as
	// raft's TCP transport, refuse one no peer can dial).
	if tcp, err := net.ResolveTCPAddr("tcp", addr); err != nil {
		return nil, fmt.Errorf("raft address %q: %w", addr, err)
	} else if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft address %q: give an address peers can reach (-raft-addr), not an unspecified one", addr)
	}
	ln, err := tls.Listen("tcp", addr, srv)
	if err != nil {
		return nil, fmt.Errorf("raft TLS listener on %s: %w", addr, err)
	}
	return &StreamLayer{Listener: ln, dial: l.PeerClientConfig(serverName)}, nil
}

// Dial connects to a peer's Raft address and completes the handshake, so
// that a refused certificate fails the dial, not a later read.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), s.dial)
	if err != nil {
		return nil, fmt.Errorf("raft TLS dial %s: %w", address, err)
	}
	return conn, nil
}
