# The IoT case's connectors: devices publish readings over MQTT, alerts
# land in PostgreSQL as rows and every reading in InfluxDB as a point.
# Each connector is off until its server is named, so that the project
# runs and deploys without them:
#
#   butter dev -var mqtt=tcp://127.0.0.1:1883 \
#     -var postgres_dsn=postgres://iot@127.0.0.1:5432/iot \
#     -var influxdb_url=http://127.0.0.1:8086 examples/iot
#
# (BUTTER_VAR_mqtt and the like, or a butter.vars.hcl beside this file,
# set them too.) The alerts table is alerts.sql's.

variable "mqtt" {
  description = "The MQTT broker devices publish readings to, as tcp://host:1883. Empty: no MQTT source."
  default     = ""
}

variable "postgres_dsn" {
  description = "The PostgreSQL database whose alerts table (alerts.sql) receives each alert. Empty: no PostgreSQL sink."
  default     = ""
}

variable "influxdb_url" {
  description = "The InfluxDB server that receives each reading as a point. Empty: no InfluxDB sink."
  default     = ""
}

variable "influxdb_database" {
  description = "The InfluxDB database the readings go to."
  default     = "iot"
}

# sensors/<device>/reading → the readings stream, keyed by the device.
source "mqtt" "readings-in" {
  enabled = var.mqtt != ""
  stream  = stream.readings
  address = var.mqtt
  topics  = ["sensors/+/reading"]
  key     = 2
}

# Each alert a row, once: the event id is the primary key.
sink "postgres" "alerts-db" {
  enabled   = var.postgres_dsn != ""
  stream    = stream.alerts
  dsn       = var.postgres_dsn
  table     = "alerts"
  columns   = { device = "device", from_c = "from", to_c = "to" }
  id_column = "event_id"
  offset    = "first"
  # Ride out a restart of the database: the partition waits meanwhile.
  retry {
    attempts    = 100
    backoff     = "200ms"
    max_backoff = "1s"
  }
}

# Each reading a point: measurement reading, tagged by device.
sink "influxdb" "readings-ts" {
  enabled     = var.influxdb_url != ""
  stream      = stream.readings
  url         = var.influxdb_url
  database    = var.influxdb_database
  measurement = "reading"
  tags        = { device = "device" }
  fields      = { temperature = "temperature" }
  time        = "at"
  offset      = "first"
}
