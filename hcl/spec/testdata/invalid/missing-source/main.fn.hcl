function "api" {
  runtime = "python"
  source  = "functions/api"
}
