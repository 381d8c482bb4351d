function "a" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /devices/{id}/readings"
  }
}

function "b" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "POST /devices/{device}/readings"
  }
}
