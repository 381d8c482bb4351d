function "echo" {
  runtime = "exec"
  command = ["cat"]
}
