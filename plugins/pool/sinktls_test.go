package pool_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/tlsutil"
	"github.com/butterfn/butter/plugins/pool"
)

// testCA makes a CA of the test's own, named name, and a server
// certificate it signed for 127.0.0.1 and localhost (PEM): the CA, its
// key, the certificate and its key.
func testCA(t *testing.T, name string) (caCert, caKey, srvCert, srvKey []byte) {
	t.Helper()
	caCert, caKey, err := tlsutil.CreateCA(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err = tlsutil.CreateCert(caCert, caKey, tlsutil.CertRequest{Kind: tlsutil.Server, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	return caCert, caKey, srvCert, srvKey
}

// TestHTTPSinkOverTLS runs `sink "http"` against a real HTTPS server on
// 127.0.0.1 whose certificate comes from a CA of the test's own and which
// requires client certificates from that CA: a sink that trusts the CA
// (tls_ca) and presents a client certificate (tls_cert, its key from a
// secret named by tls_key) delivers each record; one without the client
// certificate, and one presenting it without trusting the CA (the
// system's roots only), deliver nothing and dead-letter their records
// after their attempts, with the TLS error.
func TestHTTPSinkOverTLS(t *testing.T) {
	caCert, caKey, srvCert, srvKey := testCA(t, "hooks.test")
	cliCert, cliKey, err := tlsutil.CreateCert(caCert, caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(caCert)

	var mu sync.Mutex
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "t.ok", Partitions: 1}, broker.Topic{Name: "t.nocert", Partitions: 1}, broker.Topic{Name: "t.noca", Partitions: 1})
	sink := func(name, stream string, opts map[string]string) pool.FunctionConfig {
		o := map[string]string{"url": srv.URL + "/hook", "method": "POST"}
		for k, v := range opts {
			o[k] = v
		}
		return pool.FunctionConfig{
			Name: name, Runtime: "sink.http", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
			Options: o, Env: map[string]string{"HOOK_TLS_KEY": string(cliKey)},
			Streams: []pool.StreamTrigger{{Stream: stream, Group: "butter.test." + name + "." + stream, Offset: "first"}},
			Retry:   &pool.RetryConfig{Attempts: 2, Backoff: "20ms", MaxBackoff: "50ms"},
		}
	}
	fns := []pool.FunctionConfig{
		sink("ok", "t.ok", map[string]string{"tls_ca": string(caCert), "tls_cert": string(cliCert), "tls_key": "HOOK_TLS_KEY"}),
		sink("nocert", "t.nocert", map[string]string{"tls_ca": string(caCert)}),
		sink("noca", "t.noca", map[string]string{"tls_cert": string(cliCert), "tls_key": "HOOK_TLS_KEY"}),
	}
	p, _ := start(t, fns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	keyed(t, cl, "t.ok", "d1", events("ok", 0, 3)...)
	keyed(t, cl, "t.nocert", "d1", "nocert-0", "nocert-1")
	keyed(t, cl, "t.noca", "d1", "noca-0", "noca-1")

	for _, c := range []struct{ stream, want string }{
		{"t.nocert", "certificate required"},
		{"t.noca", "certificate signed by unknown authority"},
	} {
		for _, dl := range readAll(t, dev.Addr, c.stream+".dlq", 2) {
			msg := broker.Header(dl, broker.HeaderErrorMessage)
			if broker.Header(dl, broker.HeaderErrorType) != "Exception" || broker.Attempts(dl) != 2 || !strings.Contains(msg, c.want) {
				t.Errorf("%s: dead letter %s: type %q after %d attempts, message %q, want an Exception after 2 with %q", c.stream, dl.Value,
					broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), msg, c.want)
			}
		}
	}
	eventually(t, 30*time.Second, "the 3 records over TLS delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(events("ok", 0, 3), ",") {
		t.Errorf("delivered %v, want %v only (nothing without a client certificate or the CA)", got, events("ok", 0, 3))
	}
}
