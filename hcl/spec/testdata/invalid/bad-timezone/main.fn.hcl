function "nightly" {
  runtime = "exec"
  command = ["date"]
  trigger "cron" {
    schedule = "0 3 * * *"
    timezone = "Mars/Olympus_Mons"
  }
}
