project "j" {}

# A directory of sources needs the handler class.
function "no-handler" {
  runtime = "java"
  source  = "fns/dir"
}

function "bad-handler" {
  runtime = "java"
  source  = "fns/dir"
  handler = "com.example.Echo-2"
}

function "no-code" {
  runtime = "java"
  source  = "fns/empty"
  handler = "Echo"
}

function "python-file" {
  runtime = "java"
  source  = "fns/echo.py"
  handler = "Echo"
}
