stream "alerts" {}
stream "audit" {}

function "a" {
  runtime = "exec"
  command = ["cat"]
  emits   = [stream.alert, stream.audit, stream.audit]
}

function "b" {
  runtime = "exec"
  command = ["cat"]
  emits   = stream.alerts
}

function "c" {
  runtime = "exec"
  command = ["cat"]
  emits   = ["alerts", function.a, stream._state]
}
