stream "readings" {
  schema = "schemas/reading.json"
}
