function "sed" {
  runtime = "exec"
  command = ["sed"]
}

pipeline "shout" {
  steps = [function.sed, function.to-upper]
}
