project "openapi-extensions" {
  openapi = ["api/openapi.yaml"]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

function "get-file" {
  runtime = "exec"
  command = ["cat"]
}

function "trace" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "login" {
  steps = [function.get-device]
}
