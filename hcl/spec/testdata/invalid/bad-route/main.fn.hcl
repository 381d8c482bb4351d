function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "/hello"
  }
}

function "g" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "FETCH /hello"
  }
}
