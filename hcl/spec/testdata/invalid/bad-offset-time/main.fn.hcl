stream "readings" {}

function "detect" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream = stream.readings
    offset = "2026-13-40T25:00:00Z"
  }
}
