function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route    = "POST /f"
    auth     = "api_key"
    jwks_url = "https://auth.example.com/.well-known/jwks.json"
    audience = "f"
  }
  trigger "http" {
    route  = "GET /f"
    issuer = "https://auth.example.com/"
  }
  # An invalid auth is reported once, not again through its JWT arguments.
  trigger "http" {
    route    = "PUT /f"
    auth     = "JWT"
    jwks_url = "https://auth.example.com/.well-known/jwks.json"
    audience = "f"
  }
}
