function "api" {
  runtime = "node"
  source  = "../../shared/api"
}
