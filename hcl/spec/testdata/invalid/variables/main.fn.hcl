variable "broker" {
  description = "no default and no value"
}

variable "replicas" {
  type    = number
  default = "many"
}

variable "kind" {
  type = list
}

variable "timeout" {
  default = "5s"
}

stream "readings" {}

function "f" {
  runtime = "exec"
  command = ["cat", var.broker]
  memory  = var.broker
  timeout = var.timeot
}

source "mqtt" "in" {
  enabled = var.timeout
  stream  = stream.readings
  address = var.broker
  topics  = ["a/#"]
}
