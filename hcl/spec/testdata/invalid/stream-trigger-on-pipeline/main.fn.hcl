stream "events" {}

function "f" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "p" {
  steps = [function.f]
  trigger "stream" {
    stream = stream.events
  }
}
