variable "butter_bin" {
  type        = string
  default     = "/usr/local/bin/butter"
  description = "The butter binary on the client nodes (raw_exec runs it)."
}

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "The datacenters every platform job may run in."
}

variable "nomad_addr" {
  type        = string
  default     = "http://127.0.0.1:4646"
  description = "Nomad's HTTP API as the control plane and the gateways reach it from their nodes."
}

variable "kafka_brokers" {
  type        = string
  default     = "127.0.0.1:9092"
  description = "Comma-separated Kafka brokers for the control plane's timers and the gateways' queued routes (the pools' come from the driver's plugin block)."
}

variable "broker" {
  type        = bool
  default     = false
  description = "Run the embedded Kafka-protocol broker (butter-broker) for a dev or test cluster without Kafka; kafka_brokers must then name it."
}

variable "kafka_port" {
  type        = number
  default     = 9092
  description = "The embedded broker's port."
}

variable "server_host" {
  type        = string
  default     = "127.0.0.1"
  description = "Where the gateways reach the control plane (a host name or address; its port is server_http_port)."
}

variable "server_http_port" {
  type    = number
  default = 4750
}

variable "server_raft_port" {
  type    = number
  default = 4751
}

variable "gateway_count" {
  type        = number
  default     = 1
  description = "Gateway allocations (each on a node of its own: the port is static)."
}

variable "gateway_http_port" {
  type    = number
  default = 8080
}

variable "tls" {
  type        = bool
  default     = false
  description = "HTTPS and mutual TLS between the parts, with the PEM items in each job's Nomad variable (docs/security.md)."
}

variable "prometheus" {
  type        = bool
  default     = false
  description = "Run Prometheus (butter-prometheus), scraping the platform and the pools through Nomad's services."
}

variable "prometheus_bin" {
  type    = string
  default = "/usr/bin/prometheus"
}

variable "prometheus_http_port" {
  type    = number
  default = 9090
}

variable "timeout" {
  type        = string
  default     = "5m"
  description = "How long an apply waits for each job's deployment."
}
