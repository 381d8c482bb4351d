function "f" {
  runtime = "exec"
  command = ["cat"]
  instances {
    min = 5
    max = 2
  }
}
