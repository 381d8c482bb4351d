function "f" {
  runtime = "exec"
  command = ["cat"]
  trigger "http" {
    route    = "POST /f"
    auth     = "jwt"
    jwks_url = "ftp://auth.example.com/jwks.json"
    audience = ""
  }
  trigger "http" {
    route    = "GET /f"
    auth     = "jwt"
    jwks_url = "https://butter:hunter2@auth.example.com/jwks.json"
    audience = "f"
    issuer   = ""
  }
  trigger "http" {
    route    = "PUT /f"
    auth     = "jwt"
    jwks_url = "/.well-known/jwks.json"
    audience = "f"
  }
}
