function "f" {
  runtime = "exec"
  command = ["cat"]
  retry {
    attempts    = 0
    backoff     = "10s"
    max_backoff = "1s"
  }
}
