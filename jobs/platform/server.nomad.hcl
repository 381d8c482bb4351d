# butter-server: the Butter control plane (Raft). It deploys projects' jobs
# to Nomad, fires cron timers into Kafka, and serves bundles to Nomad's
# artifact fetcher.
#
#   nomad job run -var butter_bin=/usr/local/bin/butter \
#     -var kafka_brokers=kafka-1:9092 jobs/platform/server.nomad.hcl
#
# With -var tls=true the API is HTTPS and Raft mutual TLS, with the CA,
# certificate and key (PEM) in the items tls_ca, tls_cert and tls_key of
# the Nomad variable nomad/jobs/butter-server (docs/jobs.md).
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

variable "tls" {
  type        = bool
  default     = false
  description = "Serve the API over HTTPS and Raft over mutual TLS, with the PEM items tls_ca, tls_cert and tls_key of the Nomad variable nomad/jobs/butter-server."
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "The datacenters the job may run in (Nomad's datacenters; \"*\" for any)."
}

job "butter-server" {
  datacenters = var.datacenters
  type        = "service"

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

      # With TLS every API request but a blob read needs a client
      # certificate, which Nomad's checks cannot present: check the port.
      check {
        type     = var.tls ? "tcp" : "http"
        path     = var.tls ? "" : "/v1/status/leader"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.butter_bin
        args = concat([
          "server",
          "-data-dir", "${NOMAD_ALLOC_DIR}/data/server",
          "-http-addr", "${NOMAD_ADDR_http}",
          "-raft-addr", "${NOMAD_ADDR_raft}",
          "-nomad-addr", var.nomad_addr,
          "-kafka-brokers", var.kafka_brokers,
          ], var.tls ? [
          "-tls-ca-file", "${NOMAD_SECRETS_DIR}/tls/ca.pem",
          "-tls-cert-file", "${NOMAD_SECRETS_DIR}/tls/cert.pem",
          "-tls-key-file", "${NOMAD_SECRETS_DIR}/tls/key.pem",
        ] : [])
      }

      # Secrets from the Nomad variable nomad/jobs/butter-server, which this
      # task's workload identity may read by default: each of its items
      # becomes an environment variable of the task (NOMAD_TOKEN,
      # BUTTER_KAFKA_SASL_MECHANISM, BUTTER_KAFKA_SASL_USERNAME,
      # BUTTER_KAFKA_SASL_PASSWORD, BUTTER_KAFKA_TLS, ...; docs/jobs.md).
      # Adding a setting is one more item in the variable, no change here;
      # the items tls_ca, tls_cert and tls_key are files (below), not
      # environment variables. Without the variable, the task starts with none of them (a Nomad
      # and a Kafka without ACLs): the list guards against the blocking
      # read of a missing variable. A change restarts the task.
      template {
        destination = "${NOMAD_SECRETS_DIR}/env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{- range nomadVarList "nomad/jobs/butter-server" }}{{ if eq .Path "nomad/jobs/butter-server" }}{{ with nomadVar .Path }}{{ range .Tuples }}{{ if not (.K | regexMatch "^tls_(ca|cert|key)$") }}
        {{ .K }}={{ .V | toJSON }}
        {{- end }}{{ end }}{{ end }}{{ end }}{{ end }}
        EOT
      }

      # With -var tls=true: the CA, the server certificate and its key,
      # from the items tls_ca, tls_cert and tls_key of the same variable,
      # as files in the task's secrets dir (the key mode 0600). The task
      # waits for the variable; a missing item is an empty file, which
      # butter server refuses at start, naming it.
      dynamic "template" {
        for_each = var.tls ? { ca = "tls_ca", cert = "tls_cert", key = "tls_key" } : {}
        content {
          destination = "${NOMAD_SECRETS_DIR}/tls/${template.key}.pem"
          perms       = "0600"
          change_mode = "restart"
          data        = "{{ with nomadVar \"nomad/jobs/butter-server\" }}{{ range .Tuples }}{{ if eq .K \"${template.value}\" }}{{ .V }}{{ end }}{{ end }}{{ end }}"
        }
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
