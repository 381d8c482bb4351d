function "f" {
  runtime = "exec"
}
