function "f" {
  runtime = "exec"
  command = ["cat"]
  timeout = var.timeout
}
