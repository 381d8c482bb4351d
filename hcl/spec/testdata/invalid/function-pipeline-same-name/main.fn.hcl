function "shout" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "shout" {
  steps = [function.shout]
}
