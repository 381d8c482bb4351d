package pool_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/influxtest"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestInfluxSink runs a `sink "influxdb"` in a pool against a real InfluxDB
// 1.x and the embedded Kafka-protocol broker: JSON readings become points
// of a measurement with a tag and a field from their fields and their own
// time, written in batches; a reading delivered twice is one point; a
// reading whose field has another type than the series' is dead-lettered
// at once as PreconditionFailed with InfluxDB's words, and the rest go
// on; InfluxDB restarted midway with readings produced while it is down:
// every point arrives.
func TestInfluxSink(t *testing.T) {
	ix := influxtest.Start(t, "iot")
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "i.readings", Partitions: 1})
	sink := pool.FunctionConfig{
		Name: "readings-ts", Runtime: "sink.influxdb", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Options: map[string]string{"url": ix.URL, "database": "iot", "measurement": "reading", "tag.device": "device",
			"field.celsius": "temperature", "time": "time"},
		Streams: []pool.StreamTrigger{{Stream: "i.readings", Group: "butter.test.readings-ts.i.readings", Offset: "first"}},
		Retry:   &pool.RetryConfig{Attempts: 200, Backoff: "100ms", MaxBackoff: "500ms"},
	}
	p, srv := start(t, []pool.FunctionConfig{sink})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	reading := func(i int, temp string) *kgo.Record {
		v := fmt.Sprintf(`{"device":"d%d","temperature":%s,"time":"2026-12-04T10:00:%02dZ"}`, i%2, temp, i)
		return broker.NewEvent("i.readings", []byte("k"), []byte(v), fmt.Sprint("r-", i), "test", "test")
	}
	produceRecs := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, reading(i, fmt.Sprintf("%d.5", 20+i)))
	}
	recs = append(recs, reading(5, "25.5"), reading(40, `"hot"`)) // again; a string where the series has floats
	produceRecs(recs...)
	count := func() int {
		v := ix.QueryDB("iot", "SELECT count(celsius) FROM reading")
		if len(v) == 0 {
			return 0
		}
		return int(v[0][1].(float64))
	}
	eventually(t, 30*time.Second, "20 points", func() bool { return count() >= 20 })
	if v := ix.QueryDB("iot", `SELECT celsius FROM reading WHERE device = 'd1' AND time = '2026-12-04T10:00:07Z'`); len(v) != 1 || v[0][1].(float64) != 27.5 {
		t.Errorf("point d1 at 10:00:07: %v, want 27.5", v)
	}
	dl := readAll(t, dev.Addr, "i.readings.dlq", 1)[0]
	if msg := broker.Header(dl, broker.HeaderErrorMessage); broker.Header(dl, broker.HeaderErrorType) != "PreconditionFailed" ||
		!strings.Contains(msg, "field type conflict") || broker.Attempts(dl) != 1 {
		t.Errorf("the conflicting reading's dead letter: type %q, attempts %d, message %q", broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), msg)
	}
	if n, _ := scrape(t, srv, "butter_ordered_batches_total", `function="readings-ts"`); n == 0 {
		t.Error("the sink wrote no batch")
	}

	ix.Stop()
	recs = nil
	for i := 20; i < 30; i++ {
		recs = append(recs, reading(i, fmt.Sprintf("%d.5", 20+i)))
	}
	produceRecs(recs...)
	eventually(t, 20*time.Second, "the sink failing while InfluxDB is down", func() bool {
		n, _ := scrape(t, srv, "butter_invocation_errors_total", `function="readings-ts"`, `type="Exception"`)
		return n > 0
	})
	ix.Restart()
	eventually(t, 60*time.Second, "30 points after the restart", func() bool { return count() == 30 })
}

// TestInfluxSinkOverTLS runs `sink "influxdb"` against a real InfluxDB
// 1.x serving its API over https only, with a certificate from a CA of
// the test's own: the sink that trusts that CA (tls_ca) writes its
// points; one that trusts the system's CAs only writes none and
// dead-letters its records after their attempts with the TLS error.
// (InfluxDB 1.x does not ask for client certificates, so tls_cert and
// tls_key are tested against the webhook's HTTPS server,
// TestHTTPSinkOverTLS, through the same connectors/tlsconf.)
func TestInfluxSinkOverTLS(t *testing.T) {
	caCert, _, srvCert, srvKey := testCA(t, "influx.test")
	ix := influxtest.StartTLS(t, "iot", influxtest.TLS{Cert: srvCert, Key: srvKey, CA: caCert})
	if !strings.HasPrefix(ix.URL, "https://") {
		t.Fatalf("influxd's URL %s is not https", ix.URL)
	}
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "i.ok", Partitions: 1}, broker.Topic{Name: "i.noca", Partitions: 1})
	sink := func(name, stream, measurement string, opts map[string]string) pool.FunctionConfig {
		o := map[string]string{"url": ix.URL, "database": "iot", "measurement": measurement, "field.celsius": "temperature", "time": "time"}
		for k, v := range opts {
			o[k] = v
		}
		return pool.FunctionConfig{
			Name: name, Runtime: "sink.influxdb", Timeout: "10s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(), Options: o,
			Streams: []pool.StreamTrigger{{Stream: stream, Group: "butter.test." + name + "." + stream, Offset: "first"}},
			Retry:   &pool.RetryConfig{Attempts: 2, Backoff: "20ms", MaxBackoff: "50ms"},
		}
	}
	p, _ := start(t, []pool.FunctionConfig{
		sink("ok", "i.ok", "trusted", map[string]string{"tls_ca": string(caCert)}),
		sink("noca", "i.noca", "untrusted", nil),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.StartStreams(ctx, dev.Config()); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"i.ok", "i.noca"} {
		var recs []*kgo.Record
		for i := range 5 {
			v := fmt.Sprintf(`{"temperature":%d.5,"time":"2026-12-05T10:00:%02dZ"}`, 20+i, i)
			recs = append(recs, broker.NewEvent(stream, []byte("k"), []byte(v), fmt.Sprint(stream, "-", i), "test", "test"))
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, dl := range readAll(t, dev.Addr, "i.noca.dlq", 5) {
		msg := broker.Header(dl, broker.HeaderErrorMessage)
		if broker.Header(dl, broker.HeaderErrorType) != "Exception" || broker.Attempts(dl) != 2 || !strings.Contains(msg, "certificate signed by unknown authority") {
			t.Errorf("i.noca: dead letter %s: type %q after %d attempts, message %q, want an Exception after 2 naming the unknown authority",
				dl.Value, broker.Header(dl, broker.HeaderErrorType), broker.Attempts(dl), msg)
		}
	}
	eventually(t, 30*time.Second, "5 points over https", func() bool {
		v := ix.QueryDB("iot", "SELECT count(celsius) FROM trusted")
		return len(v) > 0 && int(v[0][1].(float64)) == 5
	})
	if v := ix.QueryDB("iot", "SELECT count(celsius) FROM untrusted"); len(v) != 0 {
		t.Errorf("the sink without the CA wrote points: %v", v)
	}
}
