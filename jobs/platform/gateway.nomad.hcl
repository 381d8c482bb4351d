# butter-gateway: Butter's HTTP ingress. It reads routes and API keys from
# the control plane and finds pools through Nomad's service API.
#
#   nomad job run -var butter_bin=/usr/local/bin/butter \
#     -var server_addr=http://butter-server.example:4750 jobs/platform/gateway.nomad.hcl

variable "butter_bin" {
  type    = string
  default = "/usr/local/bin/butter"
}

variable "http_port" {
  type    = number
  default = 8080
}

variable "count" {
  type    = number
  default = 1
}

variable "server_addr" {
  type        = string
  default     = "http://127.0.0.1:4750"
  description = "The control plane's HTTP API."
}

variable "nomad_addr" {
  type    = string
  default = "http://127.0.0.1:4646"
}

variable "kafka_brokers" {
  type        = string
  default     = "127.0.0.1:9092"
  description = "Comma-separated Kafka brokers, for queued and async routes."
}

job "butter-gateway" {
  type = "service"

  group "gateway" {
    count = var.count

    network {
      port "http" {
        static = var.http_port
      }
    }

    service {
      name     = "butter-gateway"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/v1/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "gateway" {
      driver = "raw_exec"

      config {
        command = var.butter_bin
        args = [
          "gateway",
          "-listen", "${NOMAD_ADDR_http}",
          "-address", var.server_addr,
          "-nomad-addr", var.nomad_addr,
          "-kafka-brokers", var.kafka_brokers,
        ]
      }

      # Secrets from the Nomad variable nomad/jobs/butter-gateway, which this
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
        {{- range nomadVarList "nomad/jobs/butter-gateway" }}{{ if eq .Path "nomad/jobs/butter-gateway" }}{{ with nomadVar .Path }}{{ range .Tuples }}
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
