project "sandboxes" {}

function "holder" {
  runtime = "exec"
  command = ["cat"]
  sandbox = false
  secret "DB_PASSWORD" {
    vault = "kv/data/db#password"
  }
}

function "neighbour" {
  runtime = "exec"
  command = ["cat"]
  sandbox = false
}

function "alone" {
  runtime = "exec"
  command = ["cat"]
  pool    = "tools"
  sandbox = false
}

function "typo" {
  runtime = "exec"
  command = ["cat"]
  sandbox = "off"
}
