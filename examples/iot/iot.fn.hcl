# iot: devices POST readings over HTTP; they flow through the readings
# stream to a detector that keeps per-device state and emits alerts; a
# nightly job writes a report.

project "iot" {}

stream "readings" {
  partitions = 6
  retention  = "7d"
  schema     = "schemas/reading.json"
}

stream "alerts" {
  partitions = 3
  retention  = "30d"
}

stream "failed-readings" {
  retention = "14d"
}

stream "reports" {
  partitions = 1
  retention  = "90d"
}

function "ingest" {
  runtime      = "node"
  source       = "functions/ingest"
  handler      = "index.handle"
  input_schema = "schemas/reading.json"
  timeout      = "5s"
  memory       = 64
  # The streams ingest may emit to: the pool refuses an emit to any other.
  emits = [stream.readings]

  trigger "http" {
    route = "POST /devices/{device}/readings"
    auth  = "api_key"
  }
  instances {
    min         = 1
    max         = 50
    concurrency = 8
  }
}

function "detect" {
  runtime     = "python"
  source      = "functions/detect"
  handler     = "detect.handle"
  output      = stream.alerts
  dead_letter = stream.failed-readings
  timeout     = "2s"

  trigger "stream" {
    stream = stream.readings
    offset = "first"
    # Each poll's offsets, alerts, dead letters and state changes are
    # committed in one Kafka transaction: a crash repeats none of them
    # for read_committed consumers (docs/events.md, "Delivery").
    exactly_once = true
  }
  state {
    key = "device"
    ttl = "30d"
  }
  retry {
    attempts = 3
    backoff  = "1s"
  }
}

function "nightly" {
  runtime = "exec"
  source  = "functions/report"
  command = ["./report.sh"]
  output  = stream.reports
  timeout = "10m"
  pool    = "batch"
  memory  = "256MiB"

  trigger "cron" {
    schedule = "0 3 * * *"
    timezone = "Europe/Paris"
  }
}
