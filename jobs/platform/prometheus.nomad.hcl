# butter-prometheus: a Prometheus that finds Butter's processes through
# Nomad's service registry and scrapes their /metrics: every pool (the
# services tagged "butter", labelled with their project, pool, revision
# and allocation), the gateways (butter-gateway) and the control plane
# (butter-server). docs/observability.md lists the series.
#
#   nomad job run -var prometheus_bin=/usr/bin/prometheus jobs/platform/prometheus.nomad.hcl
#
# Prometheus comes from the client's packages (Debian: apt-get install
# prometheus). An existing Prometheus can take the scrape_configs below
# as they are. With a control plane on TLS: -var tls=true, and the CA, a
# client certificate and its key (PEM; `butter tls cert -client`) in the
# items tls_ca, tls_cert and tls_key of the Nomad variable
# nomad/jobs/butter-prometheus. Services are found by the task's template
# (its workload identity reads the namespace's services), not by
# Prometheus's nomad_sd_configs, which Debian's Prometheus lacks; a
# Prometheus built with it can use the same relabelling on its
# __meta_nomad_* labels.

variable "prometheus_bin" {
  type    = string
  default = "/usr/bin/prometheus"
}

variable "http_port" {
  type    = number
  default = 9090
}

variable "scrape_interval" {
  type    = string
  default = "15s"
}

variable "tls" {
  type        = bool
  default     = false
  description = "Scrape the control plane over mutual TLS, with the PEM items tls_ca, tls_cert and tls_key of the Nomad variable nomad/jobs/butter-prometheus."
}

locals {
  # The control plane's client certificate, with -var tls=true.
  server_tls = var.tls ? join("\n", [
    "tls_config:",
    "      ca_file: {{ env \"NOMAD_SECRETS_DIR\" }}/tls/ca.pem",
    "      cert_file: {{ env \"NOMAD_SECRETS_DIR\" }}/tls/cert.pem",
    "      key_file: {{ env \"NOMAD_SECRETS_DIR\" }}/tls/key.pem",
    "    ",
  ]) : ""
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "The datacenters the job may run in (Nomad's datacenters; \"*\" for any)."
}

job "butter-prometheus" {
  datacenters = var.datacenters
  type        = "service"

  group "prometheus" {
    count = 1

    network {
      port "http" {
        static = var.http_port
      }
    }

    service {
      name     = "butter-prometheus"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    task "prometheus" {
      driver = "raw_exec"

      config {
        command = var.prometheus_bin
        args = [
          "--config.file=${NOMAD_TASK_DIR}/prometheus.yml",
          "--storage.tsdb.path=${NOMAD_ALLOC_DIR}/data/prometheus",
          "--web.listen-address=${NOMAD_ADDR_http}",
        ]
      }

      # Nomad's services, as Prometheus's file discovery reads them: each
      # instance of every service in the job's namespace, with its name,
      # tags and allocation as the __meta_nomad_* labels Prometheus's own
      # Nomad discovery gives (Debian's Prometheus is built without it).
      # Nomad re-renders the file when a service comes or goes, and
      # Prometheus reads it again.
      template {
        destination = "${NOMAD_TASK_DIR}/nomad_services.yml"
        change_mode = "noop"
        data        = <<-EOT
        {{- range nomadServices }}
        {{- range nomadService .Name }}
        - targets: ['{{ .Address }}:{{ .Port }}']
          labels:
            __meta_nomad_service: '{{ .Name }}'
            __meta_nomad_tags: ',{{ join "," .Tags }},'
            __meta_nomad_alloc_id: '{{ .AllocID }}'
        {{- end }}
        {{- end }}
        EOT
      }

      dynamic "template" {
        for_each = var.tls ? { ca = "tls_ca", cert = "tls_cert", key = "tls_key" } : {}
        content {
          destination = "${NOMAD_SECRETS_DIR}/tls/${template.key}.pem"
          perms       = "0600"
          change_mode = "restart"
          data        = "{{ with nomadVar \"nomad/jobs/butter-prometheus\" }}{{ range .Tuples }}{{ if eq .K \"${template.value}\" }}{{ .V }}{{ end }}{{ end }}{{ end }}"
        }
      }

      template {
        destination = "${NOMAD_TASK_DIR}/prometheus.yml"
        change_mode = "restart"
        data        = <<-EOT
        global:
          scrape_interval: ${var.scrape_interval}

        scrape_configs:
          # Every pool of every project: the services tagged "butter"
          # (jobs/compile.go), with their project, pool and revision tags
          # as labels.
          - job_name: butter-pools
            file_sd_configs:
              - files: ['{{ env "NOMAD_TASK_DIR" }}/nomad_services.yml']
            relabel_configs:
              - source_labels: [__meta_nomad_tags]
                regex: '.*,butter,.*'
                action: keep
              - source_labels: [__meta_nomad_tags]
                regex: '.*,project=([^,]+),.*'
                target_label: project
              - source_labels: [__meta_nomad_tags]
                regex: '.*,pool=([^,]+),.*'
                target_label: pool
              - source_labels: [__meta_nomad_tags]
                regex: '.*,revision=([^,]+),.*'
                target_label: revision
              - source_labels: [__meta_nomad_alloc_id]
                target_label: alloc

          - job_name: butter-gateway
            file_sd_configs:
              - files: ['{{ env "NOMAD_TASK_DIR" }}/nomad_services.yml']
            relabel_configs:
              - source_labels: [__meta_nomad_service]
                regex: butter-gateway
                action: keep
              - source_labels: [__meta_nomad_alloc_id]
                target_label: alloc

          - job_name: butter-server
            scheme: ${var.tls ? "https" : "http"}
            ${local.server_tls}file_sd_configs:
              - files: ['{{ env "NOMAD_TASK_DIR" }}/nomad_services.yml']
            relabel_configs:
              - source_labels: [__meta_nomad_service]
                regex: butter-server
                action: keep
              - source_labels: [__meta_nomad_alloc_id]
                target_label: alloc
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
