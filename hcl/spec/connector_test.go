package spec_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/internal/tlsutil"
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

// TestEncryptedCredentialsDecode: a connector's credential given as a
// Vault transit ciphertext (<arg>_encrypted) travels as option
// <arg>_encrypted to the pool, which then decrypts (NeedsDecrypt), and the
// compiled pool's task gets the project's Vault role for it though no
// function declares a secret; a plaintext in its place, both forms at
// once, and sandbox = false beside it are refused.
func TestEncryptedCredentialsDecode(t *testing.T) {
	const text = `
project "iot" {}

stream "readings" {}

source "mqtt" "readings-in" {
  stream             = stream.readings
  address            = "tcp://mqtt.example.com:1883"
  topics             = ["sensors/#"]
  username           = "butter"
  password_encrypted = "vault:v1:abc="
}

sink "influxdb" "ts" {
  stream          = stream.readings
  url             = "http://influx.example.com:8086"
  measurement     = "reading"
  bucket          = "iot"
  org             = "acme"
  token_encrypted = "vault:v1:def="
}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.fn.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, rep := spec.Load(dir)
	if rep.HasErrors() || p == nil {
		t.Fatalf("a valid spec refused: %v", rep.Diags)
	}
	if got := p.Function("readings-in").Options["password_encrypted"]; got != "vault:v1:abc=" {
		t.Errorf("source's password_encrypted option %q", got)
	}
	if _, ok := p.Function("readings-in").Options["password"]; ok {
		t.Error("the source has a password option beside password_encrypted")
	}
	if got := p.Function("ts").Options["token_encrypted"]; got != "vault:v1:def=" {
		t.Errorf("sink's token_encrypted option %q", got)
	}
	if !jobs.LocalConfig(p).NeedsDecrypt() {
		t.Error("NeedsDecrypt is false for the compiled config")
	}
	c, err := jobs.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	var vaults int
	for _, g := range c.Job.TaskGroups {
		for _, task := range g.Tasks {
			if task.Vault != nil && task.Vault.Role == "butter-iot" {
				vaults++
			}
		}
	}
	if vaults == 0 {
		t.Error("no task of the compiled job has the project's Vault role, so no pool could decrypt")
	}

	for _, tc := range []struct{ name, change, want string }{
		{"plaintext", `password_encrypted = "hunter2"`, "Invalid encrypted password"},
		{"both", "password = \"MQTT_PASSWORD\"\n  password_encrypted = \"vault:v1:abc=\"", "Credential given twice"},
		{"unsandboxed neighbour", "password_encrypted = \"vault:v1:abc=\"\n}\n\nfunction \"loose\" {\n  runtime = \"exec\"\n  source = \"f\"\n  command = [\"cat\"]\n  sandbox = false", "Unsandboxed neighbour of secrets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(text, `password_encrypted = "vault:v1:abc="`, tc.change, 1)
			_, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(bad)}, "f/x": {Data: []byte("x")}}, "iot")
			var summaries []string
			for _, d := range rep.Diags {
				summaries = append(summaries, d.Summary+": "+d.Detail)
			}
			if !rep.HasErrors() || !strings.Contains(strings.Join(summaries, "\n"), tc.want) {
				t.Errorf("diagnostics:\n%s\nwant %q", strings.Join(summaries, "\n"), tc.want)
			}
		})
	}
}

// TestMQTTTLSDecodes: an MQTT connector's, a webhook's, an InfluxDB
// sink's and a PostgreSQL sink's tls_ca and tls_cert (PEM, here from variables) and tls_key (a
// secret's name, or tls_key_encrypted) reach its options as the pool
// reads them.
func TestMQTTTLSDecodes(t *testing.T) {
	ca, caKey, err := tlsutil.CreateCA("mqtt.test", 1)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := tlsutil.CreateCert(ca, caKey, tlsutil.CertRequest{Kind: tlsutil.Client, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, rep := spec.LoadFS(fstest.MapFS{"main.fn.hcl": {Data: []byte(`
variable "mqtt_ca" { type = string }
variable "mqtt_cert" { type = string }

stream "readings" {}

source "mqtt" "readings-in" {
  stream   = stream.readings
  address  = "ssl://mqtt.example.com:8883"
  topics   = ["sensors/#"]
  tls_ca   = var.mqtt_ca
  tls_cert = var.mqtt_cert
  tls_key  = "MQTT_KEY"
  secret "MQTT_KEY" {
    vault = "kv/data/mqtt#key"
  }
}

sink "mqtt" "out" {
  stream            = stream.readings
  address           = "mqtts://mqtt.example.com:8883"
  topic             = "out"
  tls_cert          = var.mqtt_cert
  tls_key_encrypted = "vault:v1:abc"
}

sink "http" "hook" {
  stream   = stream.readings
  url      = "https://hooks.internal:8443/alerts"
  tls_ca   = var.mqtt_ca
  tls_cert = var.mqtt_cert
  tls_key  = "HOOK_KEY"
  secret "HOOK_KEY" {
    vault = "kv/data/hooks#key"
  }
}

sink "influxdb" "ts" {
  stream      = stream.readings
  url         = "https://influx.internal:8086"
  database    = "iot"
  measurement = "reading"
  tls_ca      = var.mqtt_ca
}

sink "postgres" "rows" {
  stream   = stream.readings
  dsn      = "postgres://butter@db.internal/iot?sslmode=verify-full"
  table    = "readings"
  tls_ca   = var.mqtt_ca
  tls_cert = var.mqtt_cert
  tls_key  = "PG_KEY"
  secret "PG_KEY" {
    vault = "kv/data/pg#key"
  }
}
`)}}, "tls", spec.WithVars(spec.VarValue{Name: "mqtt_ca", Value: string(ca), From: "-var"}, spec.VarValue{Name: "mqtt_cert", Value: string(cert), From: "-var"}))
	if p == nil || rep.HasErrors() {
		t.Fatalf("valid TLS settings refused: %v", rep.Diags)
	}
	src := p.Function("readings-in").Options
	if src["tls_ca"] != string(ca) || src["tls_cert"] != string(cert) || src["tls_key"] != "MQTT_KEY" {
		t.Errorf("source TLS options: ca set %v, cert set %v, key %q", src["tls_ca"] != "", src["tls_cert"] != "", src["tls_key"])
	}
	sink := p.Function("out").Options
	if sink["tls_cert"] != string(cert) || sink["tls_key_encrypted"] != "vault:v1:abc" || sink["tls_ca"] != "" {
		t.Errorf("sink TLS options: cert %v, key %q, ca %q", sink["tls_cert"] != "", sink["tls_key_encrypted"], sink["tls_ca"])
	}
	hook := p.Function("hook").Options
	if hook["tls_ca"] != string(ca) || hook["tls_cert"] != string(cert) || hook["tls_key"] != "HOOK_KEY" {
		t.Errorf("webhook TLS options: ca set %v, cert set %v, key %q", hook["tls_ca"] != "", hook["tls_cert"] != "", hook["tls_key"])
	}
	if ts := p.Function("ts").Options; ts["tls_ca"] != string(ca) || ts["url"] != "https://influx.internal:8086" {
		t.Errorf("InfluxDB TLS options: ca set %v, url %q", ts["tls_ca"] != "", ts["url"])
	}
	if rows := p.Function("rows").Options; rows["tls_ca"] != string(ca) || rows["tls_cert"] != string(cert) || rows["tls_key"] != "PG_KEY" {
		t.Errorf("PostgreSQL TLS options: ca set %v, cert set %v, key %q", rows["tls_ca"] != "", rows["tls_cert"] != "", rows["tls_key"])
	}
}
