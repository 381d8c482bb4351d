project "drain" {}

# A slow call: the drain test stops the job while it is in flight.
function "slow" {
  runtime = "exec"
  command = ["sh", "-c", "sleep 2; echo finished"]
  timeout = "10s"
}
