function "f" {
  runtime = "exec"
  command = ["cat"]
}

pipeline "p" {
  steps = [function.f]
  trigger "http" {
    route    = "POST /p"
    auth     = "jwt"
    jwks_url = "https://auth.example.com/.well-known/jwks.json"
    max_body = "1 bazillion bytes"
    mode     = "async"
  }
}
