package pool_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/influxtest"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkLogins runs a `sink "postgres"` and a `sink "influxdb"` against
// servers that require a login, as production ones do: a real PostgreSQL
// 15 requiring SCRAM-SHA-256 for the sink's user, and a real InfluxDB 1.x
// with authentication on. Each sink's password comes from a secret (the
// function's environment, as the pool gives it); records become rows and
// points. The servers refuse the same connection without the password,
// so the logins are what let the records in.
func TestSinkLogins(t *testing.T) {
	const pgPass, ixPass = "pg-pa55 word", "ix-pa55word"
	pg := pgtest.Start(t)
	pg.Exec(pg.DSN, `CREATE TABLE alerts (event_id text PRIMARY KEY, device text NOT NULL)`)
	pg.RequirePassword(pgPass)
	ix := influxtest.StartWithAuth(t, "iot", "admin", ixPass)

	// Without the password, both refuse.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := pgx.Connect(ctx, pg.DSNWithoutPassword); err == nil {
		_ = c.Close(ctx)
		t.Fatal("PostgreSQL took butter's connection without a password")
	}
	resp, err := http.Post(ix.URL+"/write?db=iot", "text/plain", strings.NewReader("reading,device=x temperature=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("InfluxDB answered a write without a login %s, want 401", resp.Status)
	}

	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "l.alerts", Partitions: 1})
	fns := []pool.FunctionConfig{{
		Name: "alerts-db", Runtime: "sink.postgres", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"dsn": pg.DSNWithoutPassword, "password": "PG_PASSWORD", "table": "alerts", "column.device": "device", "id_column": "event_id"},
		Env:     map[string]string{"PG_PASSWORD": pgPass},
		Streams: []pool.StreamTrigger{{Stream: "l.alerts", Group: "butter.test.alerts-db.l.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 3, Backoff: "100ms"},
	}, {
		Name: "alerts-ts", Runtime: "sink.influxdb", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"url": ix.URL, "database": "iot", "measurement": "alert", "tag.device": "device", "field.n": "n",
			"username": "admin", "password": "INFLUX_PASSWORD"},
		Env:     map[string]string{"INFLUX_PASSWORD": ixPass},
		Streams: []pool.StreamTrigger{{Stream: "l.alerts", Group: "butter.test.alerts-ts.l.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 3, Backoff: "100ms"},
	}}
	p, _ := start(t, fns)
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 10 {
		v := fmt.Sprintf(`{"device":"d%d","n":%d}`, i%2, i)
		recs = append(recs, broker.NewEvent("l.alerts", []byte("k"), []byte(v), fmt.Sprint("a-", i), "test", "test"))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "10 rows in PostgreSQL and 10 points in InfluxDB", func() bool {
		var rows, points int
		fmt.Sscan(pg.Query("SELECT count(*) FROM alerts")[0][0], &rows)
		if v := ix.QueryDB("iot", "SELECT count(n) FROM alert"); len(v) > 0 {
			points = int(v[0][1].(float64))
		}
		return rows == 10 && points == 10
	})
}
