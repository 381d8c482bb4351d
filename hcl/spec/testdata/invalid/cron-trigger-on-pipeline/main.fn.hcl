function "f" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "nightly" {
  steps = [function.f]
  trigger "cron" {
    schedule = "0 3 * * *"
  }
}
