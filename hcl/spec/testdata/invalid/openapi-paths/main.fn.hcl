project "openapi-paths" {
  openapi = [
    "api/missing.yaml",
    "api/v1",
    "../elsewhere.yaml",
    "api/ok.yaml",
    "./api/ok.yaml",
    "api/openapi.txt",
  ]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

