stream "events" {}

stream "events" {
  partitions = 2
}
