project "deploy-bad-values" {
  deploy {
    min_healthy_time = "0s"
    healthy_deadline = "soon"
    auto_rollback    = "yes please"
    max_parallel     = 2
  }
}

function "f" {
  runtime = "exec"
  command = ["cat"]
}
