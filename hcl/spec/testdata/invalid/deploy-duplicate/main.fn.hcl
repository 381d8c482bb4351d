project "deploy-duplicate" {
  deploy {
    healthy_deadline = "5m"
  }
  deploy {
    auto_rollback = false
  }
}

function "f" {
  runtime = "exec"
  command = ["cat"]
}
