stream "events" {
  retention = "7days"
}
