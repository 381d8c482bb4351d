package dev

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/influxtest"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/internal/testport"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIoTConnectors is the IoT case on real servers under `butter dev`:
// examples/iot with connectors added (a file of the test's, since their
// servers' addresses are the test's): readings published with the real
// mosquitto_pub to a real Mosquitto reach the readings stream through a
// `source "mqtt"`, the detector (Python, per-device state, exactly once)
// raises alerts, a `sink "postgres"` writes them to a real PostgreSQL 15
// and a `sink "influxdb"` writes every reading to a real InfluxDB as a
// point. PostgreSQL is restarted midway, with readings published while
// it is down: every alert row and every point arrives, none twice. A
// malformed reading is dead-lettered as PreconditionFailed.
func TestIoTConnectors(t *testing.T) {
	mq := mqtttest.Start(t)
	pg := pgtest.Start(t)
	pg.Exec(pg.DSN, `CREATE TABLE alerts (event_id text PRIMARY KEY, device text NOT NULL, from_c double precision, to_c double precision)`)
	ix := influxtest.Start(t, "iot")

	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	connectors := fmt.Sprintf(`source "mqtt" "readings-in" {
  stream  = stream.readings
  address = %q
  topics  = ["sensors/+/reading"]
  key     = 2
}

sink "postgres" "alerts-db" {
  stream    = stream.alerts
  dsn       = %q
  table     = "alerts"
  columns   = { device = "device", from_c = "from", to_c = "to" }
  id_column = "event_id"
  offset    = "first"
  retry {
    attempts    = 100
    backoff     = "200ms"
    max_backoff = "1s"
  }
}

sink "influxdb" "readings-ts" {
  stream      = stream.readings
  url         = %q
  database    = "iot"
  measurement = "reading"
  tags        = { device = "device" }
  fields      = { temperature = "temperature" }
  time        = "at"
  offset      = "first"
}
`, mq.Address, pg.DSN, ix.URL)
	if err := os.WriteFile(filepath.Join(dir, "connectors.fn.hcl"), []byte(connectors), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t), dir))
	m := regexp.MustCompile(`broker: (127\.0\.0\.1:\d+)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("butter dev printed no broker address:\n%s", d.out.String())
	}
	brokers := m[1]
	e2etest.WaitFor(t, time.Minute, "the source's subscription", func() bool {
		return mqContains(mq, "$share/butter-iot-readings-in/sensors/+/reading")
	})

	// Each device's temperature jumps by 10 every other reading: an alert
	// per jump.
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			for _, dev := range []string{"d1", "d2"} {
				temp := 20.0
				if i%2 == 1 {
					temp = 30.0
				}
				mq.Publish("sensors/"+dev+"/reading", fmt.Sprintf(`{"device":%q,"temperature":%g,"at":"2026-12-04T10:%02d:00Z"}`, dev, temp, i))
			}
		}
	}
	publish(0, 6) // 12 readings, 10 alerts (5 per device)
	alerts := func() int {
		rows := pg.Query("SELECT count(*) FROM alerts")
		var n int
		fmt.Sscan(rows[0][0], &n)
		return n
	}
	points := func() int {
		v := ix.QueryDB("iot", "SELECT count(temperature) FROM reading")
		if len(v) == 0 {
			return 0
		}
		return int(v[0][1].(float64))
	}
	e2etest.WaitFor(t, time.Minute, "10 alert rows and 12 points", func() bool { return alerts() == 10 && points() == 12 })

	pg.Stop()
	publish(6, 10) // 8 readings, 8 alerts while PostgreSQL is down
	e2etest.WaitFor(t, time.Minute, "20 points while PostgreSQL is down", func() bool { return points() == 20 })
	pg.Restart()
	e2etest.WaitFor(t, 2*time.Minute, "18 alert rows after PostgreSQL's restart", func() bool { return alerts() == 18 })
	if rows := pg.Query("SELECT device, from_c, to_c FROM alerts ORDER BY device, event_id LIMIT 1"); len(rows) != 1 || rows[0][0] != "d1" {
		t.Errorf("first alert row: %v", rows)
	}
	if n := points(); n != 20 {
		t.Errorf("%d points, want 20", n)
	}

	// A reading that fails the readings stream's schema (its temperature
	// a string) is dead-lettered by the detector as PreconditionFailed.
	mq.Publish("sensors/d3/reading", `{"device":"d3","temperature":"hot","at":"2026-12-04T11:00:00Z"}`)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("iot.failed-readings"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var dead *kgo.Record
	for dead == nil && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if strings.Contains(string(r.Value), `"hot"`) {
				dead = r
			}
		})
	}
	if dead == nil {
		t.Fatal("the malformed reading reached no dead letter within a minute")
	}
	typ := ""
	for _, h := range dead.Headers {
		if h.Key == "ce_errortype" {
			typ = string(h.Value)
		}
	}
	if typ != "PreconditionFailed" {
		t.Errorf("the malformed reading's dead letter is typed %q, want PreconditionFailed", typ)
	}
}

func mqContains(mq *mqtttest.Broker, s string) bool {
	return strings.Contains(mq.Log(), s)
}
