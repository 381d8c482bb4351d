function "Ingest_Readings!" {
  runtime = "exec"
  command = ["cat"]
}
