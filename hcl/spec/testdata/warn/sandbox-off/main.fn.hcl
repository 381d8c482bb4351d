project "tools" {}

function "scan" {
  runtime = "exec"
  command = ["cat"]
  sandbox = false
}

function "shout" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
  sandbox = true
}
