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
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPostgresSink runs a `sink "postgres"` in a pool against a real
// PostgreSQL 15 and the embedded Kafka-protocol broker: JSON records become
// rows through its column mapping (PostgreSQL converting each field to
// its column's type), several in one statement from a stream batch; a
// record written again under the same event id adds no row; a record
// PostgreSQL refuses (NOT NULL) and one that is not JSON are dead-lettered
// at once as PreconditionFailed with PostgreSQL's words, and the rest go
// on; PostgreSQL restarted midway with records produced while it is down:
// the sink holds them (its group's lag in Kafka is theirs), and every row
// arrives.
func TestPostgresSink(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(pg.DSN, `CREATE TABLE alerts (
		event_id    text PRIMARY KEY,
		device      text NOT NULL,
		temperature double precision,
		raised_at   timestamptz
	)`)
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "p.alerts", Partitions: 1})
	sink := pool.FunctionConfig{
		Name: "alerts-db", Runtime: "sink.postgres", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"dsn": pg.DSN, "table": "alerts", "column.device": "device", "column.temperature": "reading.celsius",
			"column.raised_at": "time", "id_column": "event_id"},
		Streams: []pool.StreamTrigger{{Stream: "p.alerts", Group: "butter.test.alerts-db.p.alerts", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 200, Backoff: "100ms", MaxBackoff: "500ms"},
	}
	p, srv := start(t, []pool.FunctionConfig{sink})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	alert := func(id string, i int) *kgo.Record {
		v := fmt.Sprintf(`{"device":"d%d","reading":{"celsius":%d.5},"time":"2026-12-04T10:%02d:00Z"}`, i%3, 20+i, i%60)
		return broker.NewEvent("p.alerts", []byte("k"), []byte(v), id, "test", "test")
	}
	produceRecs := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, alert(fmt.Sprintf("a-%02d", i), i))
	}
	recs = append(recs,
		broker.NewEvent("p.alerts", []byte("k"), []byte(`{"reading":{"celsius":1}}`), "no-device", "test", "test"),
		broker.NewEvent("p.alerts", []byte("k"), []byte(`not json`), "not-json", "test", "test"),
		alert("a-03", 3), // again: no new row
	)
	produceRecs(recs...)
	count := func() int {
		rows := pg.Query("SELECT count(*) FROM alerts")
		var n int
		fmt.Sscan(rows[0][0], &n)
		return n
	}
	eventually(t, 30*time.Second, "20 rows", func() bool { return count() >= 20 })
	if rows := pg.Query("SELECT device, temperature, raised_at FROM alerts WHERE event_id = 'a-07'"); len(rows) != 1 ||
		rows[0][0] != "d1" || rows[0][1] != "27.5" || !strings.HasPrefix(rows[0][2], "2026-12-04 10:07:00") {
		t.Errorf("row a-07: %v, want d1, 27.5, 2026-12-04 10:07:00", rows)
	}
	dls := readAll(t, dev.Addr, "p.alerts.dlq", 2)
	for _, dl := range dls {
		msg := broker.Header(dl, broker.HeaderErrorMessage)
		if broker.Header(dl, broker.HeaderErrorType) != "PreconditionFailed" || broker.Attempts(dl) != 1 {
			t.Errorf("dead letter %s: type %q, attempts %d, message %q", dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), msg)
		}
		switch broker.Header(dl, broker.HeaderID) {
		case "no-device":
			if !strings.Contains(msg, `null value in column "device"`) || !strings.Contains(msg, "23502") {
				t.Errorf("the refused row's message: %q", msg)
			}
		case "not-json":
			if !strings.Contains(msg, "not JSON") {
				t.Errorf("the record that is not JSON: %q", msg)
			}
		default:
			t.Errorf("unexpected dead letter %s", dl.Value)
		}
	}
	if n, _ := scrape(t, srv, "butter_ordered_batches_total", `function="alerts-db"`); n == 0 {
		t.Error("the sink wrote no batch")
	}

	// PostgreSQL goes down; records come meanwhile; it comes back.
	pg.Stop()
	recs = nil
	for i := 20; i < 30; i++ {
		recs = append(recs, alert(fmt.Sprintf("a-%02d", i), i))
	}
	produceRecs(recs...)
	eventually(t, 20*time.Second, "the sink failing while PostgreSQL is down", func() bool {
		n, _ := scrape(t, srv, "butter_invocation_errors_total", `function="alerts-db"`, `type="Exception"`)
		return n > 0
	})
	// The sink holds its partition: the group's lag, as butter status and
	// the autoscaler read it from Kafka (committed offsets against the
	// partitions' ends), is the 10 records produced while PostgreSQL is down.
	adm := kadm.NewClient(cl)
	group := sink.Streams[0].Group
	eventually(t, 20*time.Second, "the group's lag at the 10 records held", func() bool { return groupLag(t, adm, group) == 10 })
	pg.Restart()
	eventually(t, 60*time.Second, "30 rows after the restart", func() bool { return count() == 30 })
	if n := count(); n != 30 {
		t.Errorf("%d rows, want 30 (each once)", n)
	}
	eventually(t, 20*time.Second, "the group's lag back to 0", func() bool { return groupLag(t, adm, group) == 0 })
}

// groupLag is a consumer group's lag in records, from its committed
// offsets and its topics' ends (-1 when Kafka cannot say).
func groupLag(t *testing.T, adm *kadm.Client, group string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Logf("lag of %s: %v", group, err)
		return -1
	}
	l, ok := lags[group]
	if !ok || l.Error() != nil {
		t.Logf("lag of %s: %v", group, l.Error())
		return -1
	}
	return l.Lag.Total()
}
