function "a" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /status"
  }
}

pipeline "p" {
  steps = [function.a]
  trigger "http" {
    route = "ANY /status"
  }
}
