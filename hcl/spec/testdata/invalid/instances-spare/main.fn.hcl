function "f" {
  runtime = "exec"
  command = ["cat"]
  instances {
    max   = 2
    spare = 3
  }
}

function "g" {
  runtime = "exec"
  command = ["cat"]
  instances {
    spare = -1
  }
}
