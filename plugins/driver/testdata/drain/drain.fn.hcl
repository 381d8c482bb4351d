project "drain" {}

# A slow call: the drain test stops the job while it is in flight. 5s
# gives the test, polling the pool's metrics, room to see it in flight on
# a busy machine; the 30s timeout (and so the task's kill_timeout) lets it
# finish during the drain however slow the machine.
function "slow" {
  runtime = "exec"
  command = ["sh", "-c", "sleep 5; echo finished"]
  timeout = "30s"
}
