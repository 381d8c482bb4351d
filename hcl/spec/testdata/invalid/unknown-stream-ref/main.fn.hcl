stream "readings" {}

function "ingest" {
  runtime = "exec"
  command = ["cat"]
  output  = stream.readngs
}
