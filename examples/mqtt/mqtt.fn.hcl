# mqtt: devices publish readings over MQTT; a source carries them into
# the readings stream, a function raises an alert when a reading is too
# hot, and a sink publishes each alert back over MQTT to alerts/<device>.
#
# Neither connector names a broker: under `butter dev` they use its
# embedded MQTT broker (printed at start, tcp://127.0.0.1:1883 when that
# port is free). To deploy to Nomad, give each an address, like
#   address = "tcp://mqtt.example.com:1883"
#
#   mosquitto_sub -t 'alerts/#' -v &
#   mosquitto_pub -t sensors/d1/reading -m '{"device":"d1","temperature":35}'

project "sensors" {}

stream "readings" {
  partitions = 3
  schema     = "schemas/reading.json"
}

stream "alerts" {
  partitions = 3
}

stream "rejected" {}

source "mqtt" "readings-in" {
  stream = stream.readings
  topics = ["sensors/+/reading"]
  # The record's key: the topic's second level, the device.
  key = 2
}

function "threshold" {
  runtime     = "node"
  source      = "functions/threshold"
  handler     = "index.handle"
  output      = stream.alerts
  dead_letter = stream.rejected
  timeout     = "2s"

  trigger "stream" {
    stream = stream.readings
    offset = "first"
  }
}

sink "mqtt" "alerts-out" {
  stream = stream.alerts
  # {key} is the record's key: the device.
  topic = "alerts/{key}"
}
