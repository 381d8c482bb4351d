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
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIoTConnectors is the IoT case on real servers under `butter dev`:
// examples/iot with its connectors on (their servers named with -var,
// as its connectors.fn.hcl says): readings published with the real
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
	ix := influxtest.Start(t, "iot")

	// examples/iot as it is: its connectors are on once their servers
	// are named, here with -var; the table is its alerts.sql.
	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	ddl, err := os.ReadFile(filepath.Join(dir, "alerts.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.Exec(pg.DSN, string(ddl))
	gw := testport.Addr(t)
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", gw, "-server-addr", testport.Addr(t),
		"-var", "mqtt="+mq.Address, "-var", "postgres_dsn="+pg.DSN, "-var", "influxdb_url="+ix.URL, dir))
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

// TestMQTTExample runs examples/mqtt under `butter dev`, whose MQTT
// source and sink declare no broker: butter dev starts its embedded MQTT
// broker (mochi-mqtt) on the port given, and says so. Readings published
// to it with the real mosquitto_pub go through the source, the readings
// stream and the threshold function (Node); its alerts come back over
// MQTT through the sink, received by the real mosquitto_sub on
// alerts/<device>. A cool reading, published before each hot one of the
// same device (so handled before it), raises none.
func TestMQTTExample(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (apt-get install mosquitto-clients; make test-deps does): %v", tool, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "mqtt")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "mqtt"))); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(testport.Port(t))
	d := startDev(t, exec.Command(e2etest.Bin(), "dev", "-listen", testport.Addr(t), "-server-addr", testport.Addr(t), "-mqtt-port", port, dir))
	if want := "MQTT broker (embedded, for the connectors without an address): tcp://127.0.0.1:" + port; !strings.Contains(d.out.String(), want) {
		t.Fatalf("butter dev did not print %q:\n%s", want, d.out.String())
	}

	var subOut testlog.Buffer
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "alerts/#", "-v", "-q", "1")
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sub.Process.Kill()
		_ = sub.Wait()
	})
	// Until the source has subscribed, a published reading reaches no
	// one (QoS 1 to a topic no client subscribes to is dropped): publish
	// a cool and a hot reading every two seconds until an alert arrives.
	var last time.Time
	e2etest.WaitFor(t, 2*time.Minute, "an alert on alerts/d1 over MQTT", func() bool {
		if time.Since(last) > 2*time.Second {
			last = time.Now()
			for _, m := range []string{`{"device":"d1","temperature":20}`, `{"device":"d1","temperature":35}`} {
				if out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", "sensors/d1/reading", "-m", m).CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
			}
		}
		return strings.Contains(subOut.String(), "alerts/d1 ")
	})
	for _, line := range strings.Split(strings.TrimSpace(subOut.String()), "\n") {
		if line != `alerts/d1 {"device":"d1","temperature":35,"alert":"too hot"}` {
			t.Errorf("mosquitto_sub received %q, want only alerts/d1 with the hot reading's alert", line)
		}
	}
}
