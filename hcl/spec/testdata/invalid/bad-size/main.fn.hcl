function "big" {
  runtime = "exec"
  command = ["cat"]
  memory  = "lots"
}
