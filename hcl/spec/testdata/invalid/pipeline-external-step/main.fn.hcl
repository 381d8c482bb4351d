function "up" {
  runtime = "exec"
  command = ["tr", "a-z", "A-Z"]
}

pipeline "scheme" {
  steps = [function.up, "ftp://files.example.com/figlet"]
}

pipeline "nohost" {
  steps = ["http:///function/figlet", function.up]
}

pipeline "creds" {
  steps = [{ url = "https://user:secret@faas.example.com/function/figlet" }]
}

pipeline "options" {
  steps = [{ url = "http://faas.example.com/function/figlet", options = { font = "big" } }]
}

pipeline "quoted" {
  steps = ["function.up"]
}

pipeline "timeout" {
  steps = [{ url = "http://faas.example.com/function/figlet", timeout = "soon" }]
}

pipeline "fn_timeout" {
  steps = [{ function = function.up, timeout = "5s" }]
}

pipeline "blank" {
  steps = ["http://faas.example.com/function/fig let"]
}
