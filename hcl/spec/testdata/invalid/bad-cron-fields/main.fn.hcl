function "nightly" {
  runtime = "exec"
  command = ["date"]
  trigger "cron" {
    schedule = "* * *"
  }
}
