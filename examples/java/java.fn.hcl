# java: functions in Java 17 with the SDK in sdk/java (docs/java.md). Each
# function's directory holds its sources, which the pool compiles with the
# JDK's javac against the SDK (once per content), and any jars it needs.

project "java" {}

# POST /greet/{name} answers a greeting as JSON; ?shout=1 in capitals.
function "greet" {
  runtime = "java"
  source  = "functions/greet"
  handler = "example.Greet"
  timeout = "5s"
  memory  = 128

  trigger "http" {
    route = "POST /greet/{name}"
  }
}

# POST /visits/{user} counts each user's visits in per-key state.
function "visits" {
  runtime = "java"
  source  = "functions/visits"
  handler = "example.Visits"
  timeout = "5s"
  memory  = 128

  state {
    key = "user"
  }
  trigger "http" {
    route = "POST /visits/{user}"
  }
}
