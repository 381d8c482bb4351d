package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/hashicorp/cli"
)

type tlsCommand struct{}

func (c *tlsCommand) Synopsis() string { return "Create a CA and certificates for mutual TLS" }
func (c *tlsCommand) Help() string {
	return trimHelp(`
Usage: butter tls <subcommand> [options]

  Creates the certificates of the control plane's mutual TLS, as nomad tls
  does for Nomad (docs/security.md):

    butter tls ca create
    butter tls cert create -server      (once per server)
    butter tls cert create -client      (for the CLI and the gateway)
`)
}
func (c *tlsCommand) Run(args []string) int { return cli.RunResultHelp }

// tlsGroupCommand is `butter tls ca` and `butter tls cert`: help only (the
// CLI lists their create subcommand under it).
type tlsGroupCommand struct{ synopsis, usage string }

func (c *tlsGroupCommand) Synopsis() string { return c.synopsis }
func (c *tlsGroupCommand) Help() string {
	return trimHelp("\nUsage: " + c.usage + "\n\n  " + c.synopsis + ".\n")
}
func (c *tlsGroupCommand) Run(args []string) int { return cli.RunResultHelp }

type tlsCACreateCommand struct{ ui cli.Ui }

func (c *tlsCACreateCommand) Synopsis() string { return "Create a certificate authority" }
func (c *tlsCACreateCommand) Help() string {
	return trimHelp(`
Usage: butter tls ca create [options]

  Creates a CA (ECDSA P-256) and writes <domain>-agent-ca.pem and
  <domain>-agent-ca-key.pem in the current directory. It refuses to
  overwrite either. Keep the key private: whoever holds it can make
  certificates every server trusts.

Options:

  -domain=butter
    The domain of the certificates this CA signs (server.<region>.<domain>).

  -days=1825
    How long the CA is valid.
`)
}

func (c *tlsCACreateCommand) Run(args []string) int {
	fs := newFlagSet("tls ca create")
	domain := fs.String("domain", tlsutil.DefaultDomain, "")
	days := fs.Int("days", 1825, "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *domain == "" {
		err = errors.New("-domain is empty")
	}
	if err == nil && *days <= 0 {
		err = fmt.Errorf("-days=%d: want at least 1", *days)
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	certFile, keyFile := *domain+"-agent-ca.pem", *domain+"-agent-ca-key.pem"
	if err := refuseExisting(certFile, keyFile); err != nil {
		return failed(c.ui, err)
	}
	cert, key, err := tlsutil.CreateCA(*domain, *days)
	if err != nil {
		return failed(c.ui, err)
	}
	if err := writeNew(certFile, cert, 0o644); err != nil {
		return failed(c.ui, err)
	}
	if err := writeNew(keyFile, key, 0o600); err != nil {
		os.Remove(certFile)
		return failed(c.ui, err)
	}
	c.ui.Output("==> CA certificate saved to " + certFile)
	c.ui.Output("==> CA certificate key saved to " + keyFile)
	return exitOK
}

type tlsCertCreateCommand struct{ ui cli.Ui }

func (c *tlsCertCreateCommand) Synopsis() string {
	return "Create a server or client certificate signed by the CA"
}
func (c *tlsCertCreateCommand) Help() string {
	return trimHelp(`
Usage: butter tls cert create -server|-client [options]

  Creates a certificate and key (ECDSA P-256) signed by the CA and writes
  them in the current directory as <region>-server-<domain>-N.pem and
  <region>-server-<domain>-N-key.pem (or -client-), N being the first
  number whose files do not exist yet: run it once per server.

  A server certificate is for server.<region>.<domain>, localhost and
  127.0.0.1 and authenticates as a server and as a client (servers call
  each other). A client certificate is for client.<region>.<domain> and
  authenticates only as a client: it cannot serve, nor join Raft when the
  servers verify server hostnames.

Options:

  -server
    Create a server certificate.

  -client
    Create a client certificate (the CLI, the gateway).

  -region=global
    The region in the certificate's name.

  -domain=butter
    The domain in the certificate's name; it also names the default CA
    files.

  -ca=<domain>-agent-ca.pem
    The CA certificate.

  -key=<domain>-agent-ca-key.pem
    The CA's key.

  -additional-dnsname=<name>
    Another DNS name the certificate is for (repeat the flag for more), such
    as the host name clients reach a server by.

  -additional-ipaddress=<ip>
    Another IP address the certificate is for (repeatable).

  -days=365
    How long the certificate is valid.
`)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (c *tlsCertCreateCommand) Run(args []string) int {
	fs := newFlagSet("tls cert create")
	server := fs.Bool("server", false, "")
	client := fs.Bool("client", false, "")
	region := fs.String("region", tlsutil.DefaultRegion, "")
	domain := fs.String("domain", tlsutil.DefaultDomain, "")
	caFile := fs.String("ca", "", "")
	keyFile := fs.String("key", "", "")
	days := fs.Int("days", 365, "")
	var dnsNames, ipList listFlag
	fs.Var(&dnsNames, "additional-dnsname", "")
	fs.Var(&ipList, "additional-ipaddress", "")
	pos, err := parseInterspersed(fs, args)
	if err == nil && *server == *client {
		err = errors.New("give exactly one of -server and -client")
	}
	if err == nil && (*region == "" || *domain == "") {
		err = errors.New("-region and -domain must not be empty")
	}
	if err == nil && *days <= 0 {
		err = fmt.Errorf("-days=%d: want at least 1", *days)
	}
	var ips []net.IP
	for _, s := range ipList {
		ip := net.ParseIP(s)
		if ip == nil && err == nil {
			err = fmt.Errorf("-additional-ipaddress=%q: not an IP address", s)
		}
		ips = append(ips, ip)
	}
	if err != nil || len(pos) > 0 {
		return usageError(c.ui, c.Help(), err, pos, 0)
	}
	if *caFile == "" {
		*caFile = *domain + "-agent-ca.pem"
	}
	if *keyFile == "" {
		*keyFile = *domain + "-agent-ca-key.pem"
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		return failed(c.ui, fmt.Errorf("read the CA certificate (-ca): %w; create one with butter tls ca create", err))
	}
	caKey, err := os.ReadFile(*keyFile)
	if err != nil {
		return failed(c.ui, fmt.Errorf("read the CA key (-key): %w", err))
	}
	kind := tlsutil.Client
	if *server {
		kind = tlsutil.Server
	}
	cert, key, err := tlsutil.CreateCert(caPEM, caKey, tlsutil.CertRequest{
		Kind: kind, Region: *region, Domain: *domain, DNSNames: dnsNames, IPs: ips, Days: *days,
	})
	if err != nil {
		return failed(c.ui, fmt.Errorf("%s with %s: %w", *caFile, *keyFile, err))
	}
	certOut, keyOut, err := nextFreeCert(fmt.Sprintf("%s-%s-%s", *region, kind, *domain))
	if err != nil {
		return failed(c.ui, err)
	}
	if err := writeNew(certOut, cert, 0o644); err != nil {
		return failed(c.ui, err)
	}
	if err := writeNew(keyOut, key, 0o600); err != nil {
		os.Remove(certOut)
		return failed(c.ui, err)
	}
	c.ui.Output(fmt.Sprintf("==> Using CA file %s and CA key %s", *caFile, *keyFile))
	c.ui.Output(fmt.Sprintf("==> %s certificate saved to %s", strings.ToUpper(string(kind[:1]))+string(kind[1:]), certOut))
	c.ui.Output(fmt.Sprintf("==> %s certificate key saved to %s", strings.ToUpper(string(kind[:1]))+string(kind[1:]), keyOut))
	return exitOK
}

// nextFreeCert is the first <prefix>-N.pem and <prefix>-N-key.pem of
// which neither exists. Any error other than a file's absence (an
// unreadable directory) is returned, naming the file.
func nextFreeCert(prefix string) (certFile, keyFile string, err error) {
	for n := 0; ; n++ {
		certFile, keyFile = fmt.Sprintf("%s-%d.pem", prefix, n), fmt.Sprintf("%s-%d-key.pem", prefix, n)
		taken := false
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				taken = true
			} else if !errors.Is(err, os.ErrNotExist) {
				return "", "", fmt.Errorf("%s: %w", f, err)
			}
		}
		if !taken {
			return certFile, keyFile, nil
		}
	}
}

// refuseExisting fails, naming the file, when any of files exists.
func refuseExisting(files ...string) error {
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s already exists: remove it or run in another directory; it is never overwritten", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
