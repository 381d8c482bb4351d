# Every error in a project is reported, not only the first.
stream "readings" {
  partitions = 0
}

function "ingest" {
  runtime = "rust"
  source  = "functions/ingest"
  timeout = "soon"
  output  = stream.reading
  trigger "http" {
    route = "POST readings"
  }
}
