package tlsconf_test

import (
	"strings"
	"testing"

	"github.com/butterfn/butter/connectors/tlsconf"
	"github.com/butterfn/butter/internal/tlsutil"
)

// TestFromOptions: no options, no configuration; a CA and a client
// certificate with its key from the environment make one; a tls_ca that
// holds no certificate, a key whose secret has no value and a key that
// does not match the certificate are refused, each saying which.
func TestFromOptions(t *testing.T) {
	ca, caKey, err := tlsutil.CreateCA("tls.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := tlsutil.CreateCert(ca, caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := tlsutil.CreateCert(ca, caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tlsconf.FromOptions(map[string]string{"url": "https://x"}, nil); c != nil || err != nil {
		t.Errorf("no TLS options: %v, %v; want nil, nil", c, err)
	}
	c, err := tlsconf.FromOptions(map[string]string{"tls_ca": string(ca), "tls_cert": string(cert), "tls_key": "KEY"}, map[string]string{"KEY": string(key)})
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("CA and client certificate: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		opts map[string]string
		env  map[string]string
		want string
	}{
		{map[string]string{"tls_ca": "not a certificate"}, nil, "tls_ca holds no PEM certificate"},
		{map[string]string{"tls_cert": string(cert), "tls_key": "KEY"}, nil, `secret "KEY" has no value`},
		{map[string]string{"tls_cert": string(cert), "tls_key": "KEY"}, map[string]string{"KEY": string(otherKey)}, "tls_cert and the key in secret KEY"},
	} {
		if _, err := tlsconf.FromOptions(tc.opts, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one with %q", tc.opts["tls_key"], err, tc.want)
		}
	}
}
