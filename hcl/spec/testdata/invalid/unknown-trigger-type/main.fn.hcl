function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "kafka" {
    topic = "events"
  }
}
