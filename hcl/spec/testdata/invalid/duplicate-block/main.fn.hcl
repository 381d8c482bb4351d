function "f" {
  runtime = "exec"
  command = ["cat"]
  instances {
    max = 2
  }
  instances {
    max = 3
  }
}
