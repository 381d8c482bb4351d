function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route        = "POST /f"
    cors_origins = ["*", "https://app.example.com"]
  }
  trigger "http" {
    route        = "GET /f"
    cors_origins = ["https://app.example.com/", "https://*.example.com", "app.example.com"]
  }
  trigger "http" {
    route        = "PUT /f"
    cors_origins = ["https://app.example.com", "https://app.example.com"]
  }
  trigger "http" {
    route        = "DELETE /f"
    cors_origins = "*"
  }
}
