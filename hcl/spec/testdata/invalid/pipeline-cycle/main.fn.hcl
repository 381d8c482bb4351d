function "f" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "a" {
  steps = [function.f, pipeline.b]
}

pipeline "b" {
  steps = [pipeline.c]
}

pipeline "c" {
  steps = [pipeline.a, function.f]
}
