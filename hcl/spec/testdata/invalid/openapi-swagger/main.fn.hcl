project "openapi-swagger" {
  openapi = ["api/swagger.yaml"]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

