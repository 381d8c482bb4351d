project "s" {}

stream "alerts" {}

sink "mqtt" "later" {
  stream = stream.alerts
  url    = "mqtt://broker:1883"
}

sink "htp" "typo" {
  stream = stream.alerts
  url    = "https://example.com"
}

sink "http" "no-url" {
  stream = stream.alerts
}

sink "http" "bad" {
  stream    = stream.alerts
  url       = "ftp://example.com/x"
  method    = "DELETE"
  headers   = { "Butter-Trace" = "x" }
  signature = "HOOK_KEY"
}
