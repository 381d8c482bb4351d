function "a" {
  runtime = "exec"
  command = ["cat"]
}

function "b" {
  runtime = "exec"
  command = ["cat"]
  output  = function.a
}
