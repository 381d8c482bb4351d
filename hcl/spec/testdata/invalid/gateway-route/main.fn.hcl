project "gateway-route" {
  openapi = ["api/status.yaml"]
}

function "metrics" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /metrics"
  }
}

function "orders" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /v1/orders"
  }
  trigger "http" {
    route = "ANY /v1"
  }
}

function "latest" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /{tenant}/invocations/latest"
  }
}

function "status" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "health" {
  steps = [function.status]
  trigger "http" {
    route = "GET /v1/health"
  }
}
