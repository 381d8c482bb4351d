function "echo" {
  runtime = "exec"
  command = ["tee"]
}
