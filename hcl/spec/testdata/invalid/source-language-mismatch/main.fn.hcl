function "f" {
  runtime = "python"
  source  = "handler.js"
}
