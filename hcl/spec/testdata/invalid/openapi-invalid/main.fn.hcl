project "openapi-invalid" {
  openapi = [
    "api/no-version.yaml",
    "api/broken.json",
    "api/four.yaml",
    "api/external.yaml",
  ]
}

function "get-device" {
  runtime = "exec"
  command = ["cat"]
}

