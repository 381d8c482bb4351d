job "butter-pipeline" {
  type = "service"
  group "default" {
    count          = 1
    shutdown_delay = "2s"
    task "pool" {
      driver       = "butter"
      kill_timeout = "7s"
      config {
        pool     = "default"
        port     = "invoke"
        project  = "pipeline"
        revision = "565a2525c92b"
        function {
          command       = ["sed", "-u"]
          concurrency   = 1
          cpu           = 100
          max_instances = 10
          memory        = 16
          min_instances = 0
          name          = "sed"
          runtime       = "exec"
          timeout       = "2s"
          options {
            e = "s/hate/love/"
          }
        }
        function {
          command       = ["tr", "[:lower:]", "[:upper:]"]
          concurrency   = 1
          cpu           = 100
          max_instances = 10
          memory        = 16
          min_instances = 0
          name          = "to-upper"
          runtime       = "exec"
          timeout       = "2s"
        }
      }
      resources {
        cpu        = 300
        memory     = 96
        memory_max = 384
      }
    }
    spread {
      attribute = "$${node.unique.id}"
      weight    = 100
    }
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m0s"
      progress_deadline = "0s"
      auto_revert       = false
    }
    network {
      port "invoke" {
      }
    }
    service {
      name     = "butter-pipeline-default"
      tags     = ["butter", "project=pipeline", "pool=default", "revision=565a2525c92b"]
      port     = "invoke"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/v1/health"
        interval = "10s"
        timeout  = "2s"
      }
    }
    scaling {
      min     = 1
      max     = 10
      enabled = true
      policy {
        cooldown        = "30s"
        scale_in_delay  = "5m0s"
        target_inflight = 0.7
        target_lag      = 1000
        capacity {
          sed      = 10
          to-upper = 10
        }
      }
    }
  }
  meta {
    butter_auto_rollback = "true"
    butter_project       = "pipeline"
    butter_revision      = "565a2525c92b"
  }
}
