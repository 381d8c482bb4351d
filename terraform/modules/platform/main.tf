# The Butter platform as Nomad jobs: the jobspecs of jobs/platform,
# registered through the Butter provider's butter_nomad_job (the Nomad
# provider cannot be installed where this was built; docs/terraform.md
# says why and how to swap it for nomad_job). Nomad parses each jobspec
# with the variables below, as `nomad job run -var ...` would.

terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

locals {
  jobs        = "${path.module}/../../../jobs/platform"
  datacenters = jsonencode(var.datacenters)
  server_addr = "${var.tls ? "https" : "http"}://${var.server_host}:${var.server_http_port}"
}

resource "butter_nomad_job" "broker" {
  count = var.broker ? 1 : 0

  jobspec = file("${local.jobs}/broker.nomad.hcl")
  timeout = var.timeout
  variables = {
    butter_bin  = var.butter_bin
    kafka_port  = tostring(var.kafka_port)
    datacenters = local.datacenters
  }
}

resource "butter_nomad_job" "server" {
  jobspec = file("${local.jobs}/server.nomad.hcl")
  timeout = var.timeout
  variables = {
    butter_bin    = var.butter_bin
    http_port     = tostring(var.server_http_port)
    raft_port     = tostring(var.server_raft_port)
    nomad_addr    = var.nomad_addr
    kafka_brokers = var.kafka_brokers
    tls           = tostring(var.tls)
    datacenters   = local.datacenters
  }
  depends_on = [butter_nomad_job.broker]
}

resource "butter_nomad_job" "gateway" {
  jobspec = file("${local.jobs}/gateway.nomad.hcl")
  timeout = var.timeout
  variables = {
    butter_bin    = var.butter_bin
    http_port     = tostring(var.gateway_http_port)
    count         = tostring(var.gateway_count)
    server_addr   = local.server_addr
    nomad_addr    = var.nomad_addr
    kafka_brokers = var.kafka_brokers
    tls           = tostring(var.tls)
    datacenters   = local.datacenters
  }
  depends_on = [butter_nomad_job.server]
}

resource "butter_nomad_job" "prometheus" {
  count = var.prometheus ? 1 : 0

  jobspec = file("${local.jobs}/prometheus.nomad.hcl")
  timeout = var.timeout
  variables = {
    prometheus_bin = var.prometheus_bin
    http_port      = tostring(var.prometheus_http_port)
    tls            = tostring(var.tls)
    datacenters    = local.datacenters
  }
  depends_on = [butter_nomad_job.server]
}
