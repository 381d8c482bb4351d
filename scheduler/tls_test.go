package scheduler_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/fsm"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// pki is a CA and certificates of it, as files in a directory.
type pki struct {
	dir                           string
	ca, caKey                     []byte
	caFile, serverCert, serverKey string
	clientCert, clientKey         string
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.ca, p.caKey, err = tlsutil.CreateCA(tlsutil.DefaultDomain, 1); err != nil {
		t.Fatal(err)
	}
	p.caFile = writeFile(t, p.dir, "ca.pem", p.ca)
	sc, sk, err := tlsutil.CreateCert(p.ca, p.caKey, tlsutil.CertRequest{Kind: tlsutil.Server, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert, p.serverKey = writeFile(t, p.dir, "server.pem", sc), writeFile(t, p.dir, "server-key.pem", sk)
	cc, ck, err := tlsutil.CreateCert(p.ca, p.caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = writeFile(t, p.dir, "client.pem", cc), writeFile(t, p.dir, "client-key.pem", ck)
	return p
}

// startTLSCluster starts three real servers on TCP with BoltDB, each
// serving its API and Raft over mutual TLS (checking that peers hold
// server certificates with verifyHostname), and
// waits until they agree on a leader.
func startTLSCluster(t *testing.T, p *pki, verifyHostname bool) []*scheduler.Server {
	t.Helper()
	logs := &testlog.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	var ids, rafts []string
	for range 3 {
		ids, rafts = append(ids, testport.Addr(t)), append(rafts, testport.Addr(t))
	}
	var out []*scheduler.Server
	for i := range ids {
		var join []string
		for j, id := range ids {
			if j != i {
				join = append(join, id)
			}
		}
		s, err := scheduler.Start(scheduler.Config{
			DataDir: t.TempDir(), HTTPAddr: ids[i], RaftAddr: rafts[i], BootstrapExpect: 3, Join: join,
			Timing: schedtest.FastTiming,
			Logger: hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("node%d", i), Output: logs, Level: hclog.Warn}),
			TLS: scheduler.TLSConfig{
				CAFile: p.caFile, CertFile: p.serverCert, KeyFile: p.serverKey,
				VerifyClient: true, VerifyServerHostname: verifyHostname,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	schedtest.WaitFor(t, 30*time.Second, "the three TLS servers agree on a leader", func() bool {
		var lead raft.ServerID
		for _, s := range out {
			_, id := s.Raft().LeaderWithID()
			if id == "" || lead != "" && id != lead {
				return false
			}
			lead = id
		}
		return true
	})
	return out
}

func tlsClient(t *testing.T, addr string, tc api.TLSConfig) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: "https://" + addr, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSCluster: three servers with mutual TLS on the API and on Raft.
// A client with a certificate of the CA writes through a follower (the
// follower forwards it to the leader over HTTPS with its own
// certificate); a client without a certificate, one with a certificate
// of another CA, and a plain-HTTP client are refused; a blob is read
// without a certificate (Nomad's artifact getter has none) from a node
// that fetches it from its peer over mutual TLS; and a Raft peer
// presenting a client certificate cannot speak Raft to the leader, while
// the same dial with a server certificate can.
func TestTLSCluster(t *testing.T) {
	p := newPKI(t)
	leader, followers := leaderOf(t, startTLSCluster(t, p, true))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := api.TLSConfig{CACert: p.caFile, ClientCert: p.clientCert, ClientKey: p.clientKey}

	t.Run("forwarded write", func(t *testing.T) {
		c := tlsClient(t, followers[0].Addr(), good)
		if _, err := c.Projects().Put(ctx, "through-follower"); err != nil {
			t.Fatalf("a write through follower %s: %v", followers[0].Addr(), err)
		}
		var ok bool
		leader.FSM().Read(func(st *fsm.State) { ok = st.Projects["through-follower"] != nil })
		if !ok {
			t.Fatal("the leader does not hold the write acknowledged through a follower")
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		c := tlsClient(t, followers[0].Addr(), api.TLSConfig{CACert: p.caFile})
		_, err := c.Projects().Put(ctx, "anonymous")
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(err.Error(), "TLS") {
			t.Fatalf("a client without a certificate: got %v, want a 403 naming TLS", err)
		}
		if _, _, err := c.Projects().List(ctx, nil); err == nil {
			t.Fatal("a client without a certificate read the project list")
		}
	})

	t.Run("certificate of another CA", func(t *testing.T) {
		other := newPKI(t)
		c := tlsClient(t, leader.Addr(), api.TLSConfig{CACert: p.caFile, ClientCert: other.clientCert, ClientKey: other.clientKey})
		_, err := c.Projects().Put(ctx, "foreign")
		if err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("a client certificate of another CA: got %v, want a TLS handshake error", err)
		}
	})

	t.Run("server certificate of another CA", func(t *testing.T) {
		other := newPKI(t)
		c := tlsClient(t, leader.Addr(), api.TLSConfig{CACert: other.caFile, ClientCert: other.clientCert, ClientKey: other.clientKey})
		_, err := c.Agent().Self(ctx)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a client trusting another CA: got %v, want a certificate verification error", err)
		}
	})

	t.Run("plain HTTP", func(t *testing.T) {
		c, err := api.NewClient(&api.Config{Address: "http://" + leader.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Projects().Put(ctx, "plain")
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != 400 {
			t.Fatalf("a plain-HTTP client: got %v, want 400 (an HTTP request to an HTTPS server)", err)
		}
		var ok bool
		leader.FSM().Read(func(st *fsm.State) {
			ok = st.Projects["plain"] == nil && st.Projects["anonymous"] == nil && st.Projects["foreign"] == nil
		})
		if !ok {
			t.Fatal("a refused client's write was applied")
		}
	})

	t.Run("blob without a client certificate", func(t *testing.T) {
		content := []byte("a bundle Nomad's artifact getter fetches")
		sum := sha256.Sum256(content)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		if _, err := tlsClient(t, followers[0].Addr(), good).Blobs().Put(ctx, digest, bytes.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
		// Another node lacks it and fetches it from its peer over mutual
		// TLS; the getter itself presents no certificate.
		rc, err := tlsClient(t, followers[1].Addr(), api.TLSConfig{CACert: p.caFile}).Blobs().Get(ctx, digest)
		if err != nil {
			t.Fatalf("GET of a blob without a client certificate: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("blob: got %q, %v", got, err)
		}
	})

	t.Run("raft peer with a client certificate", func(t *testing.T) {
		leaderRaft := raft.ServerAddress(leaderRaftAddr(t, leader))
		if err := requestVote(t, p, p.serverCert, p.serverKey, leaderRaft); err != nil {
			t.Fatalf("the control dial with a server certificate failed, so the refusal below proves nothing: %v", err)
		}
		err := requestVote(t, p, p.clientCert, p.clientKey, leaderRaft)
		if err == nil {
			t.Fatal("a Raft peer with a client certificate was answered")
		}
		t.Logf("refused as expected: %v", err)
	})
}

func leaderOf(t *testing.T, nodes []*scheduler.Server) (*scheduler.Server, []*scheduler.Server) {
	t.Helper()
	var leader *scheduler.Server
	var followers []*scheduler.Server
	for _, s := range nodes {
		if s.Raft().State() == raft.Leader {
			leader = s
		} else {
			followers = append(followers, s)
		}
	}
	if leader == nil {
		t.Fatal("no node is the leader")
	}
	return leader, followers
}

// TestTLSClusterWithoutHostnameCheck: with -tls-verify-server-hostname
// off, peers check only that a certificate is the CA's: the cluster
// forms and forwards writes (the peers' addresses need not be in their
// certificates), a Raft peer with a certificate of another CA is
// refused, and, as documented, one with a client certificate of the CA
// is not.
func TestTLSClusterWithoutHostnameCheck(t *testing.T) {
	p := newPKI(t)
	leader, followers := leaderOf(t, startTLSCluster(t, p, false))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := tlsClient(t, followers[0].Addr(), api.TLSConfig{CACert: p.caFile, ClientCert: p.clientCert, ClientKey: p.clientKey})
	if _, err := c.Projects().Put(ctx, "through-follower"); err != nil {
		t.Fatalf("a write through follower %s: %v", followers[0].Addr(), err)
	}
	addr := raft.ServerAddress(leaderRaftAddr(t, leader))
	other := newPKI(t)
	if err := requestVote(t, p, other.serverCert, other.serverKey, addr); err == nil {
		t.Fatal("a Raft peer with a server certificate of another CA was answered")
	}
	if err := requestVote(t, p, p.clientCert, p.clientKey, addr); err != nil {
		t.Fatalf("without the hostname check a client certificate of the CA is let through (docs/security.md), got: %v", err)
	}
}

func leaderRaftAddr(t *testing.T, s *scheduler.Server) string {
	t.Helper()
	f := s.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	_, id := s.Raft().LeaderWithID()
	for _, sv := range f.Configuration().Servers {
		if sv.ID == id {
			return string(sv.Address)
		}
	}
	t.Fatalf("no address for leader %s", id)
	return ""
}

// dialLayer is a raft.StreamLayer that dials with any certificate (a
// server's or a client's), trusting the CA and checking the server name.
type dialLayer struct {
	net.Listener
	cfg *tls.Config
}

func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), d.cfg)
}

// requestVote sends one Raft RequestVote RPC, of a stale term, to addr
// through a raft.NetworkTransport over TLS with the given certificate. A
// peer that accepts the connection answers it (not granted).
func requestVote(t *testing.T, p *pki, certFile, keyFile string, addr raft.ServerAddress) error {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &dialLayer{Listener: ln, cfg: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: tlsutil.ServerName(tlsutil.DefaultRegion, tlsutil.DefaultDomain)}},
		MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger(),
	})
	defer trans.Close()
	var resp raft.RequestVoteResponse
	return trans.RequestVote("intruder", addr, &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(ln.Addr().String())},
		Term:      0, LastLogIndex: 0, LastLogTerm: 0,
	}, &resp)
}

// TestTLSConfigRefused: a TLS configuration that cannot work stops the
// server at start, with an error naming the file or the flag.
func TestTLSConfigRefused(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	ok := scheduler.TLSConfig{CAFile: p.caFile, CertFile: p.serverCert, KeyFile: p.serverKey, VerifyClient: true, VerifyServerHostname: true}
	for _, tc := range []struct {
		name     string
		edit     func(*scheduler.TLSConfig)
		raftAddr string
		want     string
	}{
		{"no key", func(c *scheduler.TLSConfig) { c.KeyFile = "" }, "", "-tls-key-file"},
		{"a key without a certificate", func(c *scheduler.TLSConfig) { c.CertFile = "" }, "", "need -tls-cert-file"},
		{"a client certificate as the server's", func(c *scheduler.TLSConfig) { c.CertFile, c.KeyFile = p.clientCert, p.clientKey }, "", p.clientCert},
		{"a certificate of another CA", func(c *scheduler.TLSConfig) { c.CertFile, c.KeyFile = other.serverCert, other.serverKey }, "", other.serverCert},
		{"another server name", func(c *scheduler.TLSConfig) { c.ServerName = "server.eu.butter" }, "", "server.eu.butter"},
		{"a missing CA file", func(c *scheduler.TLSConfig) { c.CAFile = filepath.Join(p.dir, "nope.pem") }, "", "nope.pem"},
		{"an unspecified raft address", func(*scheduler.TLSConfig) {}, "0.0.0.0:" + strings.Split(testport.Addr(t), ":")[1], "-raft-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			raftAddr := tc.raftAddr
			if raftAddr == "" {
				raftAddr = testport.Addr(t)
			}
			s, err := scheduler.Start(scheduler.Config{DataDir: t.TempDir(), HTTPAddr: testport.Addr(t), RaftAddr: raftAddr, TLS: cfg})
			if err == nil {
				s.Close()
				t.Fatal("the server started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
