function "by-tenant" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /{tenant}/orders"
  }
}

function "by-order" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /shop/{order}"
  }
}

function "more-specific" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /shop/orders"
  }
}
