project "openapi-not-a-list" {
  openapi = "api/openapi.yaml"
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

