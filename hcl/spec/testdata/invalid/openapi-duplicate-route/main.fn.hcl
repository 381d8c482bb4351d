project "openapi-duplicate-route" {
  openapi = ["api/devices.yaml", "api/more.yaml"]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

function "show-device" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /devices/{id}"
  }
}

function "delete-device" {
  runtime = "exec"
  command = ["cat"]
}

function "remove-device" {
  runtime = "exec"
  command = ["cat"]
}
