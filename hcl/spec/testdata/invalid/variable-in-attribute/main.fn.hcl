stream "readings" {}

function "f" {
  runtime = "exec"
  command = ["cat"]
  timeout = stream.readings
}
