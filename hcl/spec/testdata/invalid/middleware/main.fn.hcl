project "shop" {
  middleware = [function.auht, function.log]
}

stream "orders" {}

function "auth" {
  runtime = "http"
  command = ["./auth-server"]
}

function "log" {
  runtime = "exec"
  command = ["cat"]
}

function "orders" {
  runtime = "exec"
  command = ["cat"]

  trigger "http" {
    route      = "POST /orders"
    middleware = [pipeline.checks]
  }
  trigger "http" {
    route      = "GET /orders"
    middleware = ["function.auth"]
  }
  trigger "http" {
    route      = "PUT /orders"
    middleware = [function.auth, function.auth]
  }
  trigger "http" {
    route      = "DELETE /orders"
    middleware = function.auth
  }
  trigger "stream" {
    stream     = stream.orders
    middleware = [function.auth]
  }
}

pipeline "checks" {
  steps = [function.log]
}
