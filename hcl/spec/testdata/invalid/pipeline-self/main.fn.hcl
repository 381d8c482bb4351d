function "f" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "loop" {
  steps = [function.f, pipeline.loop]
}
