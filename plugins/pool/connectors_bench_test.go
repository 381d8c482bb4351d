package pool_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/influxtest"
	"github.com/butterfn/butter/internal/mqtttest"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/plugins/pool"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// benchConnectorRecords is how many records each operation moves.
const benchConnectorRecords = 20000

// BenchmarkConnectors measures records per second through the sinks and
// the MQTT source against real servers (PostgreSQL 15, InfluxDB 1.6,
// Mosquitto: make test-deps installs them), each against a bare client
// loop on the same server in the same run:
//
//   - postgres/baseline: pgx CopyFrom of the rows, in batches of 256 (the
//     pool's stream batch); postgres/sink: the records produced to a
//     topic, a pool's sink "postgres" writing them, until the table has
//     them all;
//   - influxdb/baseline: the same points in line protocol, POSTed 256 at a
//     time; influxdb/sink: through a pool's sink "influxdb";
//   - mqtt/baseline: a Paho subscriber receiving messages a Paho publisher
//     sends at QoS 1; mqtt/source: the same messages through a pool's
//     source "mqtt" into a topic, until it has them all.
//
// Each operation moves benchConnectorRecords records (-benchtime 1x).
func BenchmarkConnectors(b *testing.B) {
	b.Run("postgres", benchPostgres)
	b.Run("influxdb", benchInflux)
	b.Run("mqtt", benchMQTT)
}

func reportRate(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "records/s")
	b.ReportMetric(float64(d.Nanoseconds())/float64(n), "ns/op")
}

// Each benchmark's rounds are counted across its sub-benchmarks and their
// -count runs (which call a sub-benchmark's function again), so that no
// round finds a table, measurement or topic filter of an earlier one: a
// round that did would count records it did not move.

func benchPostgres(b *testing.B) {
	pg := pgtest.Start(b)
	round := 0
	table := func(name string) {
		pg.Exec(pg.DSN, fmt.Sprintf(`CREATE TABLE %s (event_id text PRIMARY KEY, device text NOT NULL, temperature double precision)`, name))
	}
	count := func(name string) int {
		var n int
		fmt.Sscan(pg.Query("SELECT count(*) FROM " + name)[0][0], &n)
		return n
	}
	b.Run("baseline", func(b *testing.B) {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		for b.Loop() {
			b.StopTimer()
			round++
			name := fmt.Sprintf("bare%d", round)
			table(name)
			b.StartTimer()
			start := time.Now()
			for off := 0; off < benchConnectorRecords; off += 256 {
				var rows [][]any
				for i := off; i < min(off+256, benchConnectorRecords); i++ {
					rows = append(rows, []any{fmt.Sprint("e-", i), fmt.Sprint("d", i%10), 20.5 + float64(i%7)})
				}
				if _, err := c.CopyFrom(ctx, pgx.Identifier{name}, []string{"event_id", "device", "temperature"}, pgx.CopyFromRows(rows)); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, benchConnectorRecords, time.Since(start))
		}
	})
	b.Run("sink", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			round++
			name := fmt.Sprintf("sink%d", round)
			table(name)
			dev, cl := devBroker(b)
			topic := "bp.records"
			topics(b, cl, broker.Topic{Name: topic, Partitions: 1})
			produceN(b, cl, topic, func(i int) string {
				return fmt.Sprintf(`{"device":"d%d","temperature":%g}`, i%10, 20.5+float64(i%7))
			})
			sink := pool.FunctionConfig{
				Name: "sink", Runtime: "sink.postgres", Timeout: "30s", MaxInstances: 1, Concurrency: 1, Bundle: b.TempDir(),
				Options: map[string]string{"dsn": pg.DSN, "table": name, "column.device": "device", "column.temperature": "temperature", "id_column": "event_id"},
				Streams: []pool.StreamTrigger{{Stream: topic, Group: "bench." + name, Offset: "first"}},
			}
			p, _ := start(b, []pool.FunctionConfig{sink})
			if n := count(name); n != 0 {
				b.Fatalf("table %s holds %d rows before the round", name, n)
			}
			b.StartTimer()
			t0 := time.Now()
			startStreamsB(b, p, dev)
			waitCount(b, func() int { return count(name) })
			reportRate(b, benchConnectorRecords, time.Since(t0))
			b.StopTimer()
			p.Close()
			b.StartTimer()
		}
	})
}

func benchInflux(b *testing.B) {
	ix := influxtest.Start(b, "bench")
	round := 0
	count := func(m string) int {
		v := ix.QueryDB("bench", "SELECT count(temperature) FROM "+m)
		if len(v) == 0 {
			return 0
		}
		return int(v[0][1].(float64))
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			round++
			m := fmt.Sprintf("bare%d", round)
			start := time.Now()
			for off := 0; off < benchConnectorRecords; off += 256 {
				var body strings.Builder
				for i := off; i < min(off+256, benchConnectorRecords); i++ {
					fmt.Fprintf(&body, "%s,device=d%d temperature=%g %d\n", m, i%10, 20.5+float64(i%7), int64(1_700_000_000_000_000_000)+int64(i))
				}
				resp, err := http.Post(ix.URL+"/write?db=bench&precision=ns", "text/plain", strings.NewReader(body.String()))
				if err != nil || resp.StatusCode != http.StatusNoContent {
					b.Fatalf("write: %v %v", err, resp)
				}
				resp.Body.Close()
			}
			reportRate(b, benchConnectorRecords, time.Since(start))
		}
	})
	b.Run("sink", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			round++
			m := fmt.Sprintf("sink%d", round)
			dev, cl := devBroker(b)
			topic := "bi.records"
			topics(b, cl, broker.Topic{Name: topic, Partitions: 1})
			produceN(b, cl, topic, func(i int) string {
				return fmt.Sprintf(`{"device":"d%d","temperature":%g,"t":%d}`, i%10, 20.5+float64(i%7), 1_700_000_000+i)
			})
			sink := pool.FunctionConfig{
				Name: "sink", Runtime: "sink.influxdb", Timeout: "30s", MaxInstances: 1, Concurrency: 1, Bundle: b.TempDir(),
				Options: map[string]string{"url": ix.URL, "database": "bench", "measurement": m, "tag.device": "device", "field.temperature": "temperature", "time": "t"},
				Streams: []pool.StreamTrigger{{Stream: topic, Group: "bench." + m, Offset: "first"}},
			}
			p, _ := start(b, []pool.FunctionConfig{sink})
			if n := count(m); n != 0 {
				b.Fatalf("measurement %s holds %d points before the round", m, n)
			}
			b.StartTimer()
			t0 := time.Now()
			startStreamsB(b, p, dev)
			waitCount(b, func() int { return count(m) })
			reportRate(b, benchConnectorRecords, time.Since(t0))
			b.StopTimer()
			p.Close()
			b.StartTimer()
		}
	})
}

func benchMQTT(b *testing.B) {
	mq := mqtttest.Start(b)
	round := 0
	connect := func(id string, clean bool) paho.Client {
		o := paho.NewClientOptions().AddBroker(mq.Address).SetClientID(id).SetCleanSession(clean).SetMaxResumePubInFlight(1000)
		c := paho.NewClient(o)
		if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			b.Fatalf("connect %s: %v", id, t.Error())
		}
		return c
	}
	publish := func(pub paho.Client, topic string) {
		var last paho.Token
		for i := range benchConnectorRecords {
			last = pub.Publish(topic, 1, false, fmt.Sprintf(`{"device":"d%d","seq":%d}`, i%10, i))
			if i%1000 == 999 {
				last.Wait()
			}
		}
		last.Wait()
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			round++
			topic := fmt.Sprintf("bare%d/d/reading", round)
			var got atomic.Int64
			done := make(chan struct{})
			sub := connect(fmt.Sprintf("bench-sub-%d", round), true)
			sub.Subscribe(topic, 1, func(_ paho.Client, _ paho.Message) {
				if got.Add(1) == benchConnectorRecords {
					close(done)
				}
			}).Wait()
			pub := connect(fmt.Sprintf("bench-pub-%d", round), true)
			start := time.Now()
			publish(pub, topic)
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				b.Fatalf("%d of %d messages after 2m", got.Load(), benchConnectorRecords)
			}
			reportRate(b, benchConnectorRecords, time.Since(start))
			pub.Disconnect(100)
			sub.Disconnect(100)
		}
	})
	b.Run("source", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			round++
			dev, cl := devBroker(b)
			out := "bm.readings"
			topics(b, cl, broker.Topic{Name: out, Partitions: 1})
			filter := fmt.Sprintf("src%d/+/reading", round)
			source := pool.FunctionConfig{
				Name: fmt.Sprintf("src%d", round), Runtime: "source.mqtt", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: b.TempDir(),
				Output: out, Options: map[string]string{"address": mq.Address, "topics": filter, "key": "2", "qos": "1"},
			}
			p, _ := start(b, []pool.FunctionConfig{source})
			startStreamsB(b, p, dev)
			waitFor(b, func() bool { return strings.Contains(mq.Log(), "/"+filter) })
			pub := connect(fmt.Sprintf("bench-pub-src-%d", round), true)
			b.StartTimer()
			start := time.Now()
			publish(pub, fmt.Sprintf("src%d/d/reading", round))
			waitCount(b, func() int { return topicCount(b, cl, out) })
			reportRate(b, benchConnectorRecords, time.Since(start))
			b.StopTimer()
			pub.Disconnect(100)
			p.Close()
			b.StartTimer()
		}
	})
}

func produceN(b *testing.B, cl *kgo.Client, topic string, value func(int) string) {
	b.Helper()
	recs := make([]*kgo.Record, 0, benchConnectorRecords)
	for i := range benchConnectorRecords {
		recs = append(recs, broker.NewEvent(topic, []byte(fmt.Sprint("k", i%10)), []byte(value(i)), fmt.Sprint("e-", i), "bench", "bench"))
	}
	for off := 0; off < len(recs); off += 1000 {
		if err := cl.ProduceSync(context.Background(), recs[off:min(off+1000, len(recs))]...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
}

func startStreamsB(b *testing.B, p *pool.Pool, dev *broker.Dev) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		b.Fatal(err)
	}
}

func waitCount(b *testing.B, n func() int) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for n() < benchConnectorRecords {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d records after 5m", n(), benchConnectorRecords)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// topicCount is the records of a one-partition topic: its high watermark.
func topicCount(b *testing.B, cl *kgo.Client, topic string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok {
		return 0
	}
	return int(o.Offset)
}
