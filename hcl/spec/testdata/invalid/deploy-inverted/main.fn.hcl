project "deploy-inverted" {
  deploy {
    min_healthy_time = "5m"
  }
}

function "f" {
  runtime = "exec"
  command = ["cat"]
}
