package spec_test

import (
	"maps"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/jobs"
	"github.com/butterfn/butter/plugins/pool"
)

// TestHTTPSinkDecodes: a sink "http" block becomes a function of runtime
// sink.http with one stream trigger (at "latest" unless offset says),
// its settings in its options, its secret, retry and pool as a
// function's; the compiled pool config carries them.
func TestHTTPSinkDecodes(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "hooks" {}

stream "alerts" {}

sink "http" "notify" {
  stream    = stream.alerts
  url       = "https://hooks.example.com/alerts"
  method    = "PUT"
  headers   = { "x-team" = "ops" }
  signature = "HOOK_KEY"
  offset    = "first"
  pool      = "connectors"
  secret "HOOK_KEY" {
    vault = "kv/data/hooks#alerts"
  }
  retry {
    attempts = 4
  }
}
`)}}, "hooks")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid sink refused: %v", rep.Diags)
	}
	f := p.Function("notify")
	if f == nil || f.Connector != "sink.http" || f.Runtime != "sink.http" || f.Pool != "connectors" {
		t.Fatalf("sink decoded as %+v", f)
	}
	want := map[string]string{"url": "https://hooks.example.com/alerts", "method": "PUT", "header.X-Team": "ops", "signature": "HOOK_KEY"}
	if !maps.Equal(f.Options, want) {
		t.Errorf("options %v, want %v", f.Options, want)
	}
	if len(f.Triggers) != 1 || f.Triggers[0].Type != spec.TriggerStream || f.Triggers[0].Stream != p.Stream("alerts") || f.Triggers[0].Offset.Kind != spec.OffsetFirst {
		t.Errorf("triggers %+v", f.Triggers)
	}
	if len(f.Secrets) != 1 || f.Secrets[0].Name != "HOOK_KEY" || f.Retry == nil || f.Retry.Attempts != 4 {
		t.Errorf("secrets %+v, retry %+v", f.Secrets, f.Retry)
	}
	var found bool
	for _, pc := range []*pool.Config{jobs.LocalConfig(p)} {
		for _, fc := range pc.Functions {
			if fc.Name == "notify" {
				found = true
				if fc.Runtime != "sink.http" || fc.Options["url"] != want["url"] || len(fc.Streams) != 1 || fc.Streams[0].Offset != "first" {
					t.Errorf("pool config of the sink: %+v", fc)
				}
			}
		}
	}
	if !found {
		t.Error("no pool config has the sink")
	}
}

// TestMQTTConnectorsDecode: a source "mqtt" becomes a function of runtime
// source.mqtt whose output is its stream, with no trigger; a sink "mqtt"
// one of runtime sink.mqtt triggered by its stream; their settings in
// their options, the password by its secret's name.
func TestMQTTConnectorsDecode(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "iot" {}

stream "readings" {}
stream "alerts" {}

source "mqtt" "readings-in" {
  stream   = stream.readings
  address  = "tcp://mqtt.example.com:1883"
  topics   = ["sensors/+/reading", "legacy/#"]
  key      = 2
  username = "butter"
  password = "MQTT_PASSWORD"
  secret "MQTT_PASSWORD" {
    vault = "kv/data/mqtt#password"
  }
}

sink "mqtt" "alerts-out" {
  stream  = stream.alerts
  address = "ssl://mqtt.example.com:8883"
  topic   = "alerts/{key}"
  qos     = 2
  retain  = true
}
`)}}, "iot")
	if rep.HasErrors() || p == nil {
		t.Fatalf("valid MQTT connectors refused: %v", rep.Diags)
	}
	src := p.Function("readings-in")
	if src.Runtime != "source.mqtt" || src.Output != p.Stream("readings") || len(src.Triggers) != 0 {
		t.Errorf("source: runtime %q, output %v, triggers %v", src.Runtime, src.Output, src.Triggers)
	}
	if want := map[string]string{"address": "tcp://mqtt.example.com:1883", "topics": "sensors/+/reading,legacy/#", "key": "2", "qos": "1", "username": "butter", "password": "MQTT_PASSWORD"}; !maps.Equal(src.Options, want) {
		t.Errorf("source options %v, want %v", src.Options, want)
	}
	sink := p.Function("alerts-out")
	if sink.Runtime != "sink.mqtt" || len(sink.Triggers) != 1 || sink.Triggers[0].Stream != p.Stream("alerts") {
		t.Errorf("sink: runtime %q, triggers %v", sink.Runtime, sink.Triggers)
	}
	if want := map[string]string{"address": "ssl://mqtt.example.com:8883", "topic": "alerts/{key}", "qos": "2", "retain": "true"}; !maps.Equal(sink.Options, want) {
		t.Errorf("sink options %v, want %v", sink.Options, want)
	}
}

// TestPostgresSinkDecodes: a sink "postgres" has its DSN, table, column
// mapping, id column, upsert keys and password secret in its options.
func TestPostgresSinkDecodes(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "iot" {}

stream "alerts" {}

sink "postgres" "alerts-db" {
  stream    = stream.alerts
  dsn       = "postgres://butter@db.example.com:5432/iot?sslmode=require"
  table     = "public.alerts"
  columns   = { device = "device", temperature = "reading.celsius" }
  id_column = "event_id"
  upsert    = ["device"]
  password  = "PG_PASSWORD"
  secret "PG_PASSWORD" {
    vault = "kv/data/pg#password"
  }
}
`)}}, "iot")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid Postgres sink refused: %v", rep.Diags)
	}
	f := p.Function("alerts-db")
	want := map[string]string{"dsn": "postgres://butter@db.example.com:5432/iot?sslmode=require", "table": "public.alerts",
		"column.device": "device", "column.temperature": "reading.celsius", "id_column": "event_id", "upsert": "device", "password": "PG_PASSWORD"}
	if f.Runtime != "sink.postgres" || !maps.Equal(f.Options, want) {
		t.Errorf("runtime %q, options %v, want %v", f.Runtime, f.Options, want)
	}
}

// TestInfluxSinkDecodes: a sink "influxdb" has its URL, database,
// measurement, tags, fields and time field in its options.
func TestInfluxSinkDecodes(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "iot" {}

stream "readings" {}

sink "influxdb" "readings-ts" {
  stream      = stream.readings
  url         = "http://influxdb.example.com:8086"
  database    = "iot"
  measurement = "reading"
  tags        = { device = "device" }
  fields      = { celsius = "temperature" }
  time        = "time"
}
`)}}, "iot")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid InfluxDB sink refused: %v", rep.Diags)
	}
	f := p.Function("readings-ts")
	want := map[string]string{"url": "http://influxdb.example.com:8086", "database": "iot", "measurement": "reading",
		"tag.device": "device", "field.celsius": "temperature", "time": "time"}
	if f.Runtime != "sink.influxdb" || !maps.Equal(f.Options, want) {
		t.Errorf("runtime %q, options %v, want %v", f.Runtime, f.Options, want)
	}
}

// TestPostgresSourceDecodes: a source "postgres" has its query, cursor,
// key and interval in its options and its stream as its output.
func TestPostgresSourceDecodes(t *testing.T) {
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
project "shop" {}

stream "orders" {}

source "postgres" "orders-in" {
  stream   = stream.orders
  dsn      = "postgres://butter@db.example.com/shop"
  query    = "SELECT id, customer FROM orders WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT 500"
  cursor   = "id"
  key      = "customer"
  interval = "2s"
}
`)}}, "shop")
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid Postgres source refused: %v", rep.Diags)
	}
	f := p.Function("orders-in")
	want := map[string]string{"dsn": "postgres://butter@db.example.com/shop", "cursor": "id", "key": "customer", "interval": "2s",
		"query": "SELECT id, customer FROM orders WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT 500"}
	if f.Runtime != "source.postgres" || f.Output != p.Stream("orders") || !maps.Equal(f.Options, want) {
		t.Errorf("runtime %q, output %v, options %v, want %v", f.Runtime, f.Output, f.Options, want)
	}
}
