# Routes from OpenAPI documents: each operation whose operationId names a
# function or a pipeline becomes an http trigger of it.
project "openapi" {
  openapi = [
    "api/devices.yaml",
    "api/reports.json",
  ]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
  timeout = "7s"
}

function "put-reading" {
  runtime = "exec"
  command = ["cat"]
  pool    = "ingest"
  timeout = "2s"

  trigger "http" {
    route = "GET /health"
  }
}

function "summarize" {
  runtime = "exec"
  command = ["wc", "-l"]
  timeout = "4s"
}

function "render" {
  runtime = "exec"
  command = ["cat"]
  pool    = "batch"
  timeout = "6s"
}

pipeline "report" {
  steps = [
    { function = function.summarize, options = { format = "csv" } },
    function.render,
  ]
}
