function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route    = "POST /f"
    max_body = "lots"
    timeout  = "0s"
    rate     = -1
  }
  trigger "http" {
    route    = "GET /f"
    max_body = 0
    burst    = 10
  }
  trigger "http" {
    route = "PUT /f"
    rate  = 0
    burst = 10
  }
  trigger "http" {
    route = "PATCH /f"
    rate  = 5
    burst = 0.5
  }
}
