project "s" {}

stream "alerts" {}

source "postgres" "later" {
  stream = stream.alerts
  dsn    = "postgres://butter@db/iot"
  query  = "SELECT * FROM orders"
  cursor = "id"
}

sink "postgres" "db" {
  stream  = stream.alerts
  dsn     = "postgres://butter:hunter2@db.example.com/iot"
  table   = "alerts; DROP TABLE x"
  columns = { device = "device" }
}

sink "htp" "typo" {
  stream = stream.alerts
  url    = "https://example.com"
}

sink "http" "no-url" {
  stream = stream.alerts
}

sink "http" "bad" {
  stream    = stream.alerts
  url       = "ftp://example.com/x"
  method    = "DELETE"
  headers   = { "Butter-Trace" = "x" }
  signature = "HOOK_KEY"
}

sink "mqtt" "wild" {
  stream  = stream.alerts
  address = "http://broker:1883"
  topic   = "alerts/+"
  qos     = 3
}

source "mqtt" "readings" {
  stream   = stream.alerts
  address  = "tcp://127.0.0.1:1883"
  topics   = ["sensors/#/x", "ok/+/reading", "bad+/x"]
  key      = -1
  password = "MQTT_PASSWORD"
}

source "kafka" "nope" {
  stream = stream.alerts
}

sink "influxdb" "ts" {
  stream      = stream.alerts
  url         = "influx://x"
  measurement = "m"
  bucket      = "b"
}

source "mqtt" "plain-tls" {
  stream  = stream.alerts
  address = "tcp://mqtt.example.com:1883"
  topics  = ["a/#"]
  tls_ca  = "not a certificate"
}

sink "mqtt" "half-cert" {
  stream   = stream.alerts
  address  = "ssl://mqtt.example.com:8883"
  topic    = "out"
  tls_cert = <<EOT
-----BEGIN CERTIFICATE-----
bm90IGEgY2VydA==
-----END CERTIFICATE-----
EOT
}

sink "influxdb" "half-login" {
  stream      = stream.alerts
  url         = "http://influx.example.com:8086"
  database    = "iot"
  measurement = "alert"
  username    = "butter"
}

sink "influxdb" "two-logins" {
  stream      = stream.alerts
  url         = "http://influx.example.com:8086"
  database    = "iot"
  measurement = "alert"
  username    = "butter"
  password    = "INFLUX_PASSWORD"
  token       = "INFLUX_TOKEN"
  secret "INFLUX_PASSWORD" {
    vault = "kv/data/influx#password"
  }
  secret "INFLUX_TOKEN" {
    vault = "kv/data/influx#token"
  }
}

sink "http" "plain-hook" {
  stream = stream.alerts
  url    = "http://hooks.example.com/alerts"
  tls_ca = "not a certificate"
}

sink "influxdb" "plain-influx" {
  stream      = stream.alerts
  url         = "http://influx.example.com:8086"
  database    = "iot"
  measurement = "alert"
  tls_ca      = "not a certificate"
}

sink "postgres" "plain-pg" {
  stream = stream.alerts
  dsn    = "postgres://butter@db.example.com/iot?sslmode=disable"
  table  = "alerts"
  tls_ca = "not a certificate"
}
