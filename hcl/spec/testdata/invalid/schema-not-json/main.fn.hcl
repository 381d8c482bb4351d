stream "readings" {
  schema = "reading.json"
}
