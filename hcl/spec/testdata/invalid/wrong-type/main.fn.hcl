stream "readings" {
  partitions = "six"
  compact    = "yes please"
}
