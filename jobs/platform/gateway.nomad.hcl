# butter-gateway: Butter's HTTP ingress. It reads routes and API keys from
# the control plane and finds pools through Nomad's service API.
#
#   nomad job run -var butter_bin=/usr/local/bin/butter \
#     -var server_addr=http://butter-server.example:4750 jobs/platform/gateway.nomad.hcl
#
# With a control plane on TLS: -var tls=true, an https:// server_addr, and
# the CA, client certificate and key (PEM) in the items tls_ca, tls_cert
# and tls_key of the Nomad variable nomad/jobs/butter-gateway
# (docs/jobs.md).

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

variable "tls" {
  type        = bool
  default     = false
  description = "Call the control plane over mutual TLS (server_addr https://...), with the PEM items tls_ca, tls_cert and tls_key of the Nomad variable nomad/jobs/butter-gateway."
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "The datacenters the job may run in (Nomad's datacenters; \"*\" for any)."
}

job "butter-gateway" {
  datacenters = var.datacenters
  type        = "service"

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
        args = concat([
          "gateway",
          "-listen", "${NOMAD_ADDR_http}",
          "-address", var.server_addr,
          "-nomad-addr", var.nomad_addr,
          "-kafka-brokers", var.kafka_brokers,
          ], var.tls ? [
          "-ca-cert", "${NOMAD_SECRETS_DIR}/tls/ca.pem",
          "-client-cert", "${NOMAD_SECRETS_DIR}/tls/cert.pem",
          "-client-key", "${NOMAD_SECRETS_DIR}/tls/key.pem",
        ] : [])
      }

      # Secrets from the Nomad variable nomad/jobs/butter-gateway, which this
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
        {{- range nomadVarList "nomad/jobs/butter-gateway" }}{{ if eq .Path "nomad/jobs/butter-gateway" }}{{ with nomadVar .Path }}{{ range .Tuples }}{{ if not (.K | regexMatch "^tls_(ca|cert|key)$") }}
        {{ .K }}={{ .V | toJSON }}
        {{- end }}{{ end }}{{ end }}{{ end }}{{ end }}
        EOT
      }

      # With -var tls=true: the CA, the client certificate and its key,
      # from the items tls_ca, tls_cert and tls_key of the same variable,
      # as files in the task's secrets dir (the key mode 0600). The task
      # waits for the variable; a missing item leaves an empty file, which
      # butter gateway refuses ("no PEM certificate" / "client certificate").
      dynamic "template" {
        for_each = var.tls ? { ca = "tls_ca", cert = "tls_cert", key = "tls_key" } : {}
        content {
          destination = "${NOMAD_SECRETS_DIR}/tls/${template.key}.pem"
          perms       = "0600"
          change_mode = "restart"
          data        = "{{ with nomadVar \"nomad/jobs/butter-gateway\" }}{{ range .Tuples }}{{ if eq .K \"${template.value}\" }}{{ .V }}{{ end }}{{ end }}{{ end }}"
        }
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
