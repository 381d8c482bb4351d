function "f" {
  runtime = "exec"
  command = ["cat"
}
