function "audit" {
  runtime = "exec"
  command = ["cat"]

  executions {
    redact = ["card.number", "bad..path"]
    keep   = { "1d" = "all", "1h" = "1m", "30d" = "1h" }
  }
}

function "audit2" {
  runtime = "exec"
  command = ["cat"]

  executions {
    keep = { "1h" = "2h" }
  }
}
