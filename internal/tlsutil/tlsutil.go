// Package tlsutil makes and loads the certificates of Butter's mutual TLS,
// the way `nomad tls` does for Nomad: a CA of the cluster's own (ECDSA
// P-256, crypto/x509), server certificates named server.<region>.<domain>
// and client certificates named client.<region>.<domain>.
//
// `butter tls ca create` and `butter tls cert create` write them; `butter
// server` loads them with Load into the crypto/tls configurations of its
// API (ServerConfig), of its calls to its peers (PeerClientConfig) and of
// its Raft transport (package scheduler's StreamLayer uses both).
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Defaults of the names in certificates, as Nomad's global.nomad.
const (
	DefaultRegion = "global"
	DefaultDomain = "butter"
)

// ServerName is the DNS name every server certificate of a region
// carries, and what a peer checks when it verifies server hostnames.
func ServerName(region, domain string) string {
	return "server." + region + "." + domain
}

// ClientName is the DNS name of a client certificate.
func ClientName(region, domain string) string {
	return "client." + region + "." + domain
}

// Kind is what a certificate is for.
type Kind string

// The kinds of certificate CreateCert makes.
const (
	Server Kind = "server"
	Client Kind = "client"
)

// CreateCA makes a self-signed CA certificate for domain, valid for days
// days, without name constraints (as `nomad tls ca create` by default).
// It returns the certificate and its key in PEM.
func CreateCA(domain string, days int) (certPEM, keyPEM []byte, err error) {
	if domain == "" {
		return nil, nil, errors.New("CA domain is empty")
	}
	if days <= 0 {
		return nil, nil, fmt.Errorf("CA validity of %d days: want at least 1", days)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate the CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Butter Agent CA " + serial.Text(16)[:8], Organization: []string{"Butter"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create the CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// CertRequest is what CreateCert signs.
type CertRequest struct {
	Kind   Kind
	Region string // DefaultRegion when empty
	Domain string // DefaultDomain when empty
	// DNSNames and IPs are added to the certificate's own: server
	// certificates carry server.<region>.<domain>, localhost and
	// 127.0.0.1; client certificates client.<region>.<domain>.
	DNSNames []string
	IPs      []net.IP
	Days     int
}

// CreateCert signs a server or client certificate with the CA (PEM
// certificate and key). Server certificates may authenticate as servers
// and as clients (a server calls its peers); client certificates only as
// clients, so a client certificate cannot serve or join Raft.
func CreateCert(caCertPEM, caKeyPEM []byte, req CertRequest) (certPEM, keyPEM []byte, err error) {
	if req.Region == "" {
		req.Region = DefaultRegion
	}
	if req.Domain == "" {
		req.Domain = DefaultDomain
	}
	if req.Days <= 0 {
		return nil, nil, fmt.Errorf("certificate validity of %d days: want at least 1", req.Days)
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate the key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Duration(req.Days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ca.SubjectKeyId,
	}
	switch req.Kind {
	case Server:
		tmpl.Subject = pkix.Name{CommonName: ServerName(req.Region, req.Domain)}
		tmpl.DNSNames = []string{ServerName(req.Region, req.Domain), "localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case Client:
		tmpl.Subject = pkix.Name{CommonName: ClientName(req.Region, req.Domain)}
		tmpl.DNSNames = []string{ClientName(req.Region, req.Domain)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, fmt.Errorf("certificate kind %q: want server or client", req.Kind)
	}
	tmpl.DNSNames = append(tmpl.DNSNames, req.DNSNames...)
	tmpl.IPAddresses = append(tmpl.IPAddresses, req.IPs...)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign the %s certificate: %w", req.Kind, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, any, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block in it")
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("CA certificate: it is not a CA (basic constraints say so)")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	return ca, pair.PrivateKey, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

// Files names a node's CA, certificate and key files.
type Files struct {
	CAFile, CertFile, KeyFile string
}

// Loaded is a node's CA pool and certificate, read once.
type Loaded struct {
	Pool *x509.CertPool
	Cert tls.Certificate
}

// Load reads the files. Errors name the file and the flag to fix.
func (f Files) Load() (*Loaded, error) {
	if f.CAFile == "" || f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("TLS needs all of -tls-ca-file, -tls-cert-file and -tls-key-file")
	}
	b, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-tls-ca-file %s: no PEM certificate in it", f.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert-file %s with -tls-key-file %s: %w", f.CertFile, f.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("-tls-cert-file %s: %w", f.CertFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("-tls-cert-file %s is not a server certificate of the CA in -tls-ca-file %s: %w", f.CertFile, f.CAFile, err)
	}
	cert.Leaf = leaf
	return &Loaded{Pool: pool, Cert: cert}, nil
}

// ServerConfig is the configuration of a TLS listener with l's
// certificate. With verifyClient, a client that presents a certificate
// must present one the CA signed (tls.VerifyClientCertIfGiven): the
// handshake fails otherwise. Whether a client must present one at all is
// the caller's to check (the API does so per request, the Raft transport
// with RequireAndVerifyClientCert).
func (l *Loaded) ServerConfig(verifyClient bool) *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{l.Cert}, MinVersion: tls.VersionTLS12}
	if verifyClient {
		tc.ClientCAs = l.Pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc
}

// PeerClientConfig is the configuration with which a server calls
// another: its own certificate as the client certificate, and the peer's
// verified against the CA. With serverName (a ServerName), the peer must
// also be a server of the region: its certificate must carry that name,
// whatever address was dialled. Without it only the chain is checked
// (node addresses are host:port that certificates need not carry).
func (l *Loaded) PeerClientConfig(serverName string) *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{l.Cert}, RootCAs: l.Pool, MinVersion: tls.VersionTLS12}
	if serverName != "" {
		tc.ServerName = serverName
		return tc
	}
	// Verified in VerifyConnection instead, without a host name.
	tc.InsecureSkipVerify = true
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		return VerifyChain(l.Pool, cs, x509.ExtKeyUsageServerAuth, "")
	}
	return tc
}

// VerifyChain checks the peer's certificate of cs against pool for
// usage and, when name is not empty, that it carries name.
func VerifyChain(pool *x509.CertPool, cs tls.ConnectionState, usage x509.ExtKeyUsage, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("TLS: the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("TLS: the peer's certificate: %w", err)
	}
	if name != "" {
		if err := leaf.VerifyHostname(name); err != nil {
			return fmt.Errorf("TLS: the peer's certificate is not for %s (a server certificate of this region; client certificates cannot join Raft): %w", name, err)
		}
	}
	return nil
}
