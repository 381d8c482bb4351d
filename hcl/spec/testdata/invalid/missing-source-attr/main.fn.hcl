function "api" {
  runtime = "node"
  handler = "index.handle"
}
