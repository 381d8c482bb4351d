# hello: the same echo function in each runtime. Each answers POST
# /echo/<runtime> with the request body.

project "hello" {}

function "echo-node" {
  runtime = "node"
  source  = "functions/echo-node"
  handler = "index.handle"
  timeout = "5s"
  memory  = 64

  trigger "http" {
    route = "POST /echo/node"
  }
  instances {
    min         = 0
    max         = 20
    concurrency = 16
  }
}

function "echo-python" {
  runtime = "python"
  source  = "functions/echo-python"
  handler = "main.handle"
  timeout = "5s"
  memory  = 64

  trigger "http" {
    route = "POST /echo/python"
  }
}

function "echo-go" {
  runtime = "go"
  source  = "functions/echo-go"
  timeout = "5s"
  memory  = 32

  trigger "http" {
    route = "POST /echo/go"
  }
  instances {
    max         = 4
    concurrency = 64
  }
}

# exec forks its command per call, stdin to stdout: cat is an echo.
function "echo-exec" {
  runtime = "exec"
  command = ["cat"]
  timeout = "5s"
  memory  = 16

  trigger "http" {
    route = "POST /echo/exec"
  }
}
