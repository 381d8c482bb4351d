// Package tlsconf builds the TLS configuration of a connector from its
// tls_* options: tls_ca, PEM certificates of the CAs to trust instead of
// the system's; tls_cert, the client's PEM certificate; tls_key, the name
// of the secret (in the connector's environment) holding its PEM key.
// The MQTT, PostgreSQL and InfluxDB connectors and `sink "http"` take them
// (hcl/spec decodes and checks them; plugins/runtime and plugins/pool
// build the clients).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// The options.
const (
	OptCA   = "tls_ca"   // PEM certificates of the CAs to trust
	OptCert = "tls_cert" // the client's PEM certificate
	OptKey  = "tls_key"  // the name of the secret holding its PEM key
)

// FromOptions returns the TLS configuration the options give, the key
// read from env under the secret's name; nil when they give none (a
// client then trusts the system's roots and presents no certificate).
func FromOptions(opts, env map[string]string) (*tls.Config, error) {
	ca, cert, keyName := opts[OptCA], opts[OptCert], opts[OptKey]
	if ca == "" && cert == "" && keyName == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM([]byte(ca)) {
			return nil, errors.New("tls_ca holds no PEM certificate")
		}
	}
	if cert != "" || keyName != "" {
		key, ok := env[keyName]
		if keyName == "" || !ok {
			return nil, fmt.Errorf("the client key's secret %q has no value", keyName)
		}
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return nil, fmt.Errorf("tls_cert and the key in secret %s: %w", keyName, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
