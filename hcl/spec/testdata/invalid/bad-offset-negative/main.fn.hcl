stream "readings" {}

function "detect" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream = stream.readings
    offset = -5
  }
}
