stream "readings" {}

function "ingest" {
  runtime = "exec"
  command = ["cat"]
  output  = "readings"
}
