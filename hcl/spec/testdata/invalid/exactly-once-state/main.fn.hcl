stream "readings" {}
stream "corrections" {}

function "count" {
  runtime = "exec"
  command = ["cat"]
  trigger "stream" {
    stream       = stream.readings
    exactly_once = true
  }
  trigger "stream" {
    stream = stream.corrections
  }
  trigger "http" {
    route = "POST /count"
  }
  state {
    key = "$key"
  }
}
