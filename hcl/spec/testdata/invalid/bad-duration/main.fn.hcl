function "slow" {
  runtime = "exec"
  command = ["cat"]
  timeout = "5 seconds"
}
