function "small" {
  runtime = "exec"
  command = ["cat"]
  memory  = "512KiB"
}
