function "f" {
  runtime = "exec"
  command = ["cat"]
  handler = "index.handle"
}
