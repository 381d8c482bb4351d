function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /f"
    auth  = "jwt"
  }
}
