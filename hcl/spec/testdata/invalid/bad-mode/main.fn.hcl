function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /f"
    mode  = "asynch"
  }
}
