function "api" {
  runtime = "nodejs"
  source  = "index.js"
}
