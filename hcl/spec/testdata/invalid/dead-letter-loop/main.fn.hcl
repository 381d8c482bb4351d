stream "events" {}

function "f" {
  runtime     = "exec"
  command     = ["cat"]
  dead_letter = stream.events
  trigger "stream" {
    stream = stream.events
  }
}
