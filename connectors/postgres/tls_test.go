package postgres

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestWithTLS: TLS settings make every connection of a DSN TLS, each
// host's checked against its own name, with no plain fallback (which
// sslmode=prefer, the default, adds); sslmode=disable with TLS settings
// is refused, saying which; no settings change nothing.
func TestWithTLS(t *testing.T) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	cc, err := pgconn.ParseConfig("postgres://butter@db1.example.com:5432,db2.example.com:5433/iot")
	if err != nil {
		t.Fatal(err)
	}
	plain := 0
	for _, fb := range cc.Fallbacks {
		if fb.TLSConfig == nil {
			plain++
		}
	}
	if plain == 0 {
		t.Fatal("sslmode=prefer parsed without a plain fallback: the test checks nothing")
	}
	if err := WithTLS(cc, tc); err != nil {
		t.Fatal(err)
	}
	if cc.TLSConfig == nil || cc.TLSConfig.ServerName != "db1.example.com" || cc.TLSConfig.InsecureSkipVerify {
		t.Errorf("first host's TLS %+v, want verified against db1.example.com", cc.TLSConfig)
	}
	hosts := map[string]bool{}
	for _, fb := range cc.Fallbacks {
		if fb.TLSConfig == nil || fb.TLSConfig.ServerName != fb.Host || fb.TLSConfig.InsecureSkipVerify {
			t.Errorf("fallback %s:%d: TLS %+v, want TLS verified against its host", fb.Host, fb.Port, fb.TLSConfig)
		}
		hosts[fb.Host] = true
	}
	if !hosts["db2.example.com"] {
		t.Errorf("the second host is gone from the fallbacks: %v", hosts)
	}

	off, err := pgconn.ParseConfig("postgres://butter@db.example.com/iot?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if err := WithTLS(off, tc); err == nil || !strings.Contains(err.Error(), "sslmode=disable") {
		t.Errorf("sslmode=disable with TLS settings: %v, want a refusal naming sslmode=disable", err)
	}
	if err := WithTLS(off, nil); err != nil || off.TLSConfig != nil {
		t.Errorf("no TLS settings: %v, TLS %v; want nothing changed", err, off.TLSConfig)
	}
}
