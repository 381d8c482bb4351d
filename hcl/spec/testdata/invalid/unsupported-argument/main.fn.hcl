function "f" {
  runtme  = "exec"
  command = ["cat"]
}
