function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /files/{name}.txt"
  }
}

function "g" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route = "GET /a/{id}/b/{id}"
  }
}
