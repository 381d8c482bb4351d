function "f" {
  runtime = "exec"
  command = ["cat"]
  pool    = "workers"
}

function "g" {
  runtime = "exec"
  command = ["cat"]
}

pool "workers" {
  scaling {
    min      = 5
    max      = 2
    cooldown = "-1s"
    target = {
      inflght = 0.7
      lag     = 0
    }
  }
}

pool "default" {
  scaling {
    min = -1
    target = {
      inflight = 1.5
      cpu      = 1.2
    }
  }
}

pool "worker" {
}
