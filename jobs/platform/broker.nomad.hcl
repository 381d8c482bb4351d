# butter-broker: the embedded Kafka-protocol broker (kfake) as a Nomad job,
# for dev and test clusters that have no Kafka. Production clusters point
# the server, the gateway and the driver at their own Kafka instead.
#
#   nomad job run -var butter_bin=/usr/local/bin/butter jobs/platform/broker.nomad.hcl

variable "butter_bin" {
  type        = string
  default     = "/usr/local/bin/butter"
  description = "The butter binary on the client nodes."
}

variable "kafka_port" {
  type    = number
  default = 9092
}

job "butter-broker" {
  type = "service"

  group "broker" {
    count = 1

    network {
      port "kafka" {
        static = var.kafka_port
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    task "broker" {
      driver = "raw_exec"

      config {
        command = var.butter_bin
        args    = ["broker", "-dev", "-port", "${NOMAD_PORT_kafka}", "-data-dir", "${NOMAD_ALLOC_DIR}/data/kafka"]
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
