package pool_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPostgresOverTLS runs `sink "postgres"` and `source "postgres"`
// against a real PostgreSQL 15 that serves TLS with a certificate from a
// CA of the test's own and refuses user butter's plain connections
// (hostnossl ... reject): the sink and the source given that CA (tls_ca)
// write and read their rows over TLS, checked against the CA and the
// DSN's host (their DSNs say sslmode=verify-full, which without tls_ca
// checks the system's CAs and fails); a sink that trusts the system's CAs (sslmode=verify-full,
// no tls_ca) and one that connects plainly (sslmode=disable) write
// nothing, each dead-lettering its records after their attempts with its
// error.
func TestPostgresOverTLS(t *testing.T) {
	caCert, _, srvCert, srvKey := testCA(t, "pg.test")
	pg := pgtest.Start(t)
	pg.Exec(pg.DSN, `CREATE TABLE readings (event_id text PRIMARY KEY, device text NOT NULL)`,
		`CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL)`,
		`INSERT INTO orders (customer) SELECT 'c' || g FROM generate_series(1, 5) g`)
	pg.RequireTLS(srvCert, srvKey)
	base := fmt.Sprintf("postgres://butter@127.0.0.1:%d/butter", pg.Port)

	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "pt.ok", Partitions: 1}, broker.Topic{Name: "pt.noca", Partitions: 1},
		broker.Topic{Name: "pt.plain", Partitions: 1}, broker.Topic{Name: "pt.orders", Partitions: 1})
	sink := func(name, stream, dsn string, opts map[string]string) pool.FunctionConfig {
		o := map[string]string{"dsn": dsn, "table": "readings", "column.device": "device", "id_column": "event_id"}
		for k, v := range opts {
			o[k] = v
		}
		return pool.FunctionConfig{
			Name: name, Runtime: "sink.postgres", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(), Options: o,
			Streams: []pool.StreamTrigger{{Stream: stream, Group: "butter.test." + name + "." + stream, Offset: "first"}},
			Retry:   &pool.RetryConfig{Attempts: 2, Backoff: "20ms", MaxBackoff: "50ms"},
		}
	}
	source := pool.FunctionConfig{
		Name: "orders-in", Runtime: "source.postgres", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output: "pt.orders",
		Options: map[string]string{"dsn": base + "?sslmode=verify-full", "cursor": "id", "key": "customer", "interval": "100ms", "tls_ca": string(caCert),
			"query": "SELECT id, customer FROM orders WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT 20"},
	}
	p, _ := start(t, []pool.FunctionConfig{
		// verify-full: without tls_ca it checks the system's CAs (as
		// "noca" does), so it writes only with the CA tls_ca gives.
		sink("ok", "pt.ok", base+"?sslmode=verify-full", map[string]string{"tls_ca": string(caCert)}),
		sink("noca", "pt.noca", base+"?sslmode=verify-full", nil),
		sink("plain", "pt.plain", base+"?sslmode=disable", nil),
		source,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"pt.ok", "pt.noca", "pt.plain"} {
		var recs []*kgo.Record
		for i := range 3 {
			recs = append(recs, broker.NewEvent(stream, []byte("k"), []byte(fmt.Sprintf(`{"device":"d%d"}`, i)), fmt.Sprint(stream, "-", i), "test", "test"))
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ stream, want string }{
		{"pt.noca", "certificate signed by unknown authority"},
		{"pt.plain", "no encryption"},
	} {
		for _, dl := range readAll(t, dev.Addr, c.stream+".dlq", 3) {
			msg := broker.Header(dl, broker.HeaderErrorMessage)
			if broker.Header(dl, broker.HeaderErrorType) != "Exception" || broker.Attempts(dl) != 2 || !strings.Contains(msg, c.want) {
				t.Errorf("%s: dead letter %s: type %q after %d attempts, message %q, want an Exception after 2 with %q", c.stream, dl.Value,
					broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), msg, c.want)
			}
		}
	}
	eventually(t, 30*time.Second, "the 3 rows written over TLS", func() bool {
		return len(pg.Query(`SELECT event_id FROM readings`)) >= 3
	})
	rows := pg.Query(`SELECT event_id FROM readings ORDER BY event_id`)
	if len(rows) != 3 || rows[0][0] != "pt.ok-0" || rows[2][0] != "pt.ok-2" {
		t.Errorf("rows %v, want pt.ok-0..2 only", rows)
	}
	if got := readAll(t, dev.Addr, "pt.orders", 5); len(got) != 5 || broker.Header(got[4], broker.HeaderID) != "orders-in/5" {
		t.Errorf("the source over TLS produced %d records", len(got))
	}
}
