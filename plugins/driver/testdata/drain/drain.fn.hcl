project "drain" {}

# A call the drain test holds in flight: it waits for a line of its
# input, which the test writes once the job is stopping. The 2m timeout
# (and so the task's kill_timeout) lets it finish during the drain.
function "slow" {
  runtime = "exec"
  command = ["sh", "-c", "head -n 1 >/dev/null; echo finished"]
  timeout = "2m"
}
