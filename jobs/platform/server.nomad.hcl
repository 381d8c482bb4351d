# butter-server: the Butter control plane (Raft). It deploys projects' jobs
# to Nomad, fires cron timers into Kafka, and serves bundles to Nomad's
# artifact fetcher.
#
#   nomad job run -var butter_bin=/usr/local/bin/butter \
#     -var kafka_brokers=kafka-1:9092 jobs/platform/server.nomad.hcl
#
# One server is shown; for three, run three groups (or three jobs) with
# -bootstrap-expect 3 and -join naming the others (docs/control-plane.md).

variable "butter_bin" {
  type    = string
  default = "/usr/local/bin/butter"
}

variable "http_port" {
  type    = number
  default = 4750
}

variable "raft_port" {
  type    = number
  default = 4751
}

variable "nomad_addr" {
  type        = string
  default     = "http://127.0.0.1:4646"
  description = "Nomad's HTTP API, where the deployer registers projects' jobs."
}

variable "kafka_brokers" {
  type        = string
  default     = "127.0.0.1:9092"
  description = "Comma-separated Kafka brokers, for the timer service."
}

job "butter-server" {
  type = "service"

  group "server" {
    count = 1

    network {
      port "http" {
        static = var.http_port
      }
      port "raft" {
        static = var.raft_port
      }
    }

    # Raft's data lives in the allocation dir; keep it across updates.
    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    service {
      name     = "butter-server"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/v1/status/leader"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.butter_bin
        args = [
          "server",
          "-data-dir", "${NOMAD_ALLOC_DIR}/data/server",
          "-http-addr", "${NOMAD_ADDR_http}",
          "-raft-addr", "${NOMAD_ADDR_raft}",
          "-nomad-addr", var.nomad_addr,
          "-kafka-brokers", var.kafka_brokers,
        ]
      }

      # Secrets from the Nomad variable nomad/jobs/butter-server, which this
      # task's workload identity may read by default: each of its items
      # becomes an environment variable of the task (NOMAD_TOKEN,
      # BUTTER_KAFKA_SASL_MECHANISM, BUTTER_KAFKA_SASL_USERNAME,
      # BUTTER_KAFKA_SASL_PASSWORD, BUTTER_KAFKA_TLS, ...; docs/jobs.md).
      # Adding a setting is one more item in the variable, no change here.
      # Without the variable, the task starts with none of them (a Nomad
      # and a Kafka without ACLs): the list guards against the blocking
      # read of a missing variable. A change restarts the task.
      template {
        destination = "${NOMAD_SECRETS_DIR}/env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{- range nomadVarList "nomad/jobs/butter-server" }}{{ if eq .Path "nomad/jobs/butter-server" }}{{ with nomadVar .Path }}{{ range .Tuples }}
        {{ .K }}={{ .V | toJSON }}
        {{- end }}{{ end }}{{ end }}{{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
