package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/butterfn/butter/scheduler"
	"github.com/butterfn/butter/scheduler/schedtest"
	"github.com/hashicorp/cli"
)

func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestTLSCreate: `butter tls ca create` and `butter tls cert create` write
// a CA and server and client certificates that verify against it for
// what they are for (and not for what they are not), number further
// certificates instead of overwriting, refuse to overwrite the CA, and
// refuse bad flags.
func TestTLSCreate(t *testing.T) {
	t.Chdir(t.TempDir())
	ui := cli.NewMockUi()
	if code := (&tlsCACreateCommand{ui: ui}).Run(nil); code != exitOK {
		t.Fatalf("ca create: exit %d: %s", code, ui.ErrorWriter)
	}
	caBefore, err := os.ReadFile("butter-agent-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	ui = cli.NewMockUi()
	if code := (&tlsCACreateCommand{ui: ui}).Run(nil); code != exitInvalid || !strings.Contains(ui.ErrorWriter.String(), "butter-agent-ca.pem already exists") {
		t.Fatalf("a second ca create: exit %d, %q; want %d naming the file", code, ui.ErrorWriter, exitInvalid)
	}
	if caAfter, _ := os.ReadFile("butter-agent-ca.pem"); !bytes.Equal(caBefore, caAfter) {
		t.Fatal("a second ca create changed the CA")
	}

	for _, args := range [][]string{
		{"-server", "-additional-dnsname", "butter.example.com", "-additional-ipaddress", "10.0.0.7"},
		{"-server"},
		{"-client"},
	} {
		ui = cli.NewMockUi()
		if code := (&tlsCertCreateCommand{ui: ui}).Run(args); code != exitOK {
			t.Fatalf("cert create %v: exit %d: %s", args, code, ui.ErrorWriter)
		}
	}
	ca := readCert(t, "butter-agent-ca.pem")
	if !ca.IsCA {
		t.Fatal("the CA certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	verify := func(file, name string, usage x509.ExtKeyUsage) error {
		c := readCert(t, file)
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return err
		}
		return nil
	}
	for _, f := range []string{"global-server-butter-0.pem", "global-server-butter-1.pem"} {
		for _, name := range []string{"server.global.butter", "localhost", "127.0.0.1"} {
			if err := verify(f, name, x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("%s as a server for %s: %v", f, name, err)
			}
		}
		if err := verify(f, "", x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s as a client (servers call each other): %v", f, err)
		}
		if _, err := (tlsutil.Files{CAFile: "butter-agent-ca.pem", CertFile: f, KeyFile: strings.TrimSuffix(f, ".pem") + "-key.pem"}).Load(); err != nil {
			t.Errorf("a server loads %s: %v", f, err)
		}
	}
	first := readCert(t, "global-server-butter-0.pem")
	if !slices.Contains(first.DNSNames, "butter.example.com") || len(first.IPAddresses) != 2 || !first.IPAddresses[1].Equal(net.ParseIP("10.0.0.7")) {
		t.Errorf("-additional-dnsname and -additional-ipaddress: names %v, IPs %v", first.DNSNames, first.IPAddresses)
	}
	if slices.Contains(readCert(t, "global-server-butter-1.pem").DNSNames, "butter.example.com") {
		t.Error("the second server certificate carries the first one's additional name")
	}
	if err := verify("global-client-butter-0.pem", "client.global.butter", x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("the client certificate as a client: %v", err)
	}
	if err := verify("global-client-butter-0.pem", "", x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("the client certificate verifies as a server's")
	}
	if _, err := (tlsutil.Files{CAFile: "butter-agent-ca.pem", CertFile: "global-client-butter-0.pem", KeyFile: "global-client-butter-0-key.pem"}).Load(); err == nil {
		t.Error("a server loads a client certificate as its own")
	}
	if fi, err := os.Stat("global-server-butter-0-key.pem"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key's mode: %v, %v; want 0600", fi.Mode(), err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-server", "-client"}, exitUsage, "exactly one of -server and -client"},
		{[]string{}, exitUsage, "exactly one of -server and -client"},
		{[]string{"-client", "-additional-ipaddress", "nope"}, exitUsage, `-additional-ipaddress="nope"`},
		{[]string{"-client", "-ca", "missing.pem"}, exitInvalid, "missing.pem"},
		{[]string{"-client", "-ca", "global-server-butter-0.pem", "-key", "global-server-butter-0-key.pem"}, exitInvalid, "not a CA"},
	} {
		ui = cli.NewMockUi()
		if code := (&tlsCertCreateCommand{ui: ui}).Run(tc.args); code != tc.code || !strings.Contains(ui.ErrorWriter.String(), tc.want) {
			t.Errorf("cert create %v: exit %d, %q; want %d and %q", tc.args, code, ui.ErrorWriter, tc.code, tc.want)
		}
	}
	if _, err := os.Stat("global-client-butter-1.pem"); err == nil {
		t.Error("a refused cert create wrote a certificate")
	}
}

// TestTLSClientFlags: certificates made by `butter tls` serve a real
// control plane with mutual TLS, and a command reaches it through
// -ca-cert, -client-cert and -client-key with a bare host:port address
// (https because a CA is given); without the client certificate it is
// refused, and the error names TLS.
func TestTLSClientFlags(t *testing.T) {
	for _, v := range []string{api.EnvAddr, api.EnvCACert, api.EnvClientCert, api.EnvClientKey, api.EnvTLSServerName, api.EnvSkipVerify} {
		t.Setenv(v, "")
	}
	t.Chdir(t.TempDir())
	for _, cmd := range []cli.Command{&tlsCACreateCommand{ui: cli.NewMockUi()}, &tlsCertCreateCommand{ui: cli.NewMockUi()}, &tlsCertCreateCommand{ui: cli.NewMockUi()}} {
		args := []string{"-server"}
		if _, ok := cmd.(*tlsCACreateCommand); ok {
			args = nil
		} else if _, err := os.Stat("global-server-butter-0.pem"); err == nil {
			args = []string{"-client"}
		}
		if code := cmd.Run(args); code != exitOK {
			t.Fatalf("%T %v: exit %d", cmd, args, code)
		}
	}
	s, _ := schedtest.SingleConfig(t, scheduler.Config{TLS: scheduler.TLSConfig{
		CAFile: "butter-agent-ca.pem", CertFile: "global-server-butter-0.pem", KeyFile: "global-server-butter-0-key.pem",
		VerifyClient: true, VerifyServerHostname: true,
	}})
	ui := cli.NewMockUi()
	if code := (&listPeersCommand{ui: ui}).Run([]string{"-address", s.Addr(), "-ca-cert", "butter-agent-ca.pem",
		"-client-cert", "global-client-butter-0.pem", "-client-key", "global-client-butter-0-key.pem"}); code != exitOK {
		t.Fatalf("list-peers with a client certificate: exit %d: %s", code, ui.ErrorWriter)
	}
	if !strings.Contains(ui.OutputWriter.String(), s.Addr()) {
		t.Errorf("list-peers printed %q, without the server %s", ui.OutputWriter, s.Addr())
	}
	ui = cli.NewMockUi()
	if code := (&listPeersCommand{ui: ui}).Run([]string{"-address", s.Addr(), "-ca-cert", "butter-agent-ca.pem"}); code != exitInvalid || !strings.Contains(ui.ErrorWriter.String(), "TLS") {
		t.Fatalf("list-peers without a client certificate: exit %d, %q; want %d naming TLS", code, ui.ErrorWriter, exitInvalid)
	}
}

// TestTLSNextFreeCert: cert create takes the first number of which
// neither file exists (a lone key counts as taken), and an error other
// than absence is reported naming the file instead of counting forever.
func TestTLSNextFreeCert(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, f := range []string{"global-server-butter-0.pem", "global-server-butter-1-key.pem"} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, k, err := nextFreeCert("global-server-butter")
	if err != nil || c != "global-server-butter-2.pem" || k != "global-server-butter-2-key.pem" {
		t.Fatalf("got %q, %q, %v; want global-server-butter-2.pem and its key", c, k, err)
	}
	if err := os.WriteFile("afile", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// afile/x-0.pem cannot be looked up (not a directory): not absent.
	if _, _, err := nextFreeCert("afile/x"); err == nil || !strings.Contains(err.Error(), "afile/x-0.pem") {
		t.Fatalf("got %v, want an error naming afile/x-0.pem", err)
	}
}
