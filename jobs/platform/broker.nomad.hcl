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

variable "sasl" {
  type        = bool
  default     = false
  description = <<-EOT
    Require a SASL login from every client. The users come from the item
    sasl_users of the Nomad variable nomad/jobs/butter-broker, one user a
    line: "MECHANISM USERNAME PASSWORD" (PLAIN, SCRAM-SHA-256 or
    SCRAM-SHA-512). Without the variable, the broker refuses to start,
    saying that its users file holds no user.
  EOT
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "The datacenters the job may run in (Nomad's datacenters; \"*\" for any)."
}

job "butter-broker" {
  datacenters = var.datacenters
  type        = "service"

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
        args = concat(
          ["broker", "-dev", "-port", "${NOMAD_PORT_kafka}", "-data-dir", "${NOMAD_ALLOC_DIR}/data/kafka"],
          var.sasl ? ["-sasl-users-file", "${NOMAD_SECRETS_DIR}/sasl-users"] : [],
        )
      }

      # The SASL users, from the Nomad variable nomad/jobs/butter-broker
      # (readable by this task's workload identity by default), so that no
      # password is in this file. Without -var sasl=true the file is
      # written but not read, and a missing variable does not block.
      template {
        destination = "${NOMAD_SECRETS_DIR}/sasl-users"
        perms       = "0600"
        change_mode = "restart"
        data        = <<-EOT
        {{- range nomadVarList "nomad/jobs/butter-broker" }}{{ if eq .Path "nomad/jobs/butter-broker" }}{{ with nomadVar .Path }}{{ .sasl_users }}{{ end }}{{ end }}{{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
