job "butter-hello" {
  type = "service"
  group "default" {
    count          = 1
    shutdown_delay = "2s"
    constraint {
      attribute = "$${attr.driver.butter.go}"
      operator  = "is_set"
    }
    constraint {
      attribute = "$${attr.driver.butter.node}"
      operator  = "is_set"
    }
    constraint {
      attribute = "$${attr.driver.butter.python3}"
      operator  = "is_set"
    }
    task "pool" {
      driver       = "butter"
      kill_timeout = "10s"
      config {
        pool     = "default"
        port     = "invoke"
        project  = "hello"
        revision = "f6de3c12eb86"
        function {
          command       = ["cat"]
          concurrency   = 1
          cpu           = 100
          max_instances = 10
          memory        = 16
          min_instances = 0
          name          = "echo-exec"
          runtime       = "exec"
          timeout       = "5s"
        }
        function {
          bundle        = "local/bundles/13bb4923bb94035f7223c013b87ffdfe38d766eee0fb5165ea30690c61669ca6"
          concurrency   = 64
          cpu           = 100
          digest        = "sha256:13bb4923bb94035f7223c013b87ffdfe38d766eee0fb5165ea30690c61669ca6"
          max_instances = 4
          memory        = 32
          min_instances = 0
          name          = "echo-go"
          runtime       = "go"
          timeout       = "5s"
        }
        function {
          bundle        = "local/bundles/e4ae30252aa577c71824f5566645a3068304f9e1df20b91d64142a9e0c779065"
          concurrency   = 16
          cpu           = 100
          digest        = "sha256:e4ae30252aa577c71824f5566645a3068304f9e1df20b91d64142a9e0c779065"
          handler       = "index.handle"
          max_instances = 20
          memory        = 64
          min_instances = 0
          name          = "echo-node"
          runtime       = "node"
          timeout       = "5s"
        }
        function {
          bundle        = "local/bundles/9224ecf2c50eb043837dc5a8380e021d9e4edffe4cd661a2bff82a73d8cb00be"
          concurrency   = 1
          cpu           = 100
          digest        = "sha256:9224ecf2c50eb043837dc5a8380e021d9e4edffe4cd661a2bff82a73d8cb00be"
          handler       = "main.handle"
          max_instances = 10
          memory        = 64
          min_instances = 0
          name          = "echo-python"
          runtime       = "python"
          timeout       = "5s"
        }
      }
      resources {
        cpu        = 500
        memory     = 240
        memory_max = 2272
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/13bb4923bb94035f7223c013b87ffdfe38d766eee0fb5165ea30690c61669ca6"
        mode        = "dir"
        destination = "local/bundles/13bb4923bb94035f7223c013b87ffdfe38d766eee0fb5165ea30690c61669ca6"
        options {
          archive  = "tar"
          checksum = "sha256:13bb4923bb94035f7223c013b87ffdfe38d766eee0fb5165ea30690c61669ca6"
        }
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/e4ae30252aa577c71824f5566645a3068304f9e1df20b91d64142a9e0c779065"
        mode        = "dir"
        destination = "local/bundles/e4ae30252aa577c71824f5566645a3068304f9e1df20b91d64142a9e0c779065"
        options {
          archive  = "tar"
          checksum = "sha256:e4ae30252aa577c71824f5566645a3068304f9e1df20b91d64142a9e0c779065"
        }
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/9224ecf2c50eb043837dc5a8380e021d9e4edffe4cd661a2bff82a73d8cb00be"
        mode        = "dir"
        destination = "local/bundles/9224ecf2c50eb043837dc5a8380e021d9e4edffe4cd661a2bff82a73d8cb00be"
        options {
          archive  = "tar"
          checksum = "sha256:9224ecf2c50eb043837dc5a8380e021d9e4edffe4cd661a2bff82a73d8cb00be"
        }
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
      name     = "butter-hello-default"
      tags     = ["butter", "project=hello", "pool=default", "revision=f6de3c12eb86"]
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
          echo-exec   = 10
          echo-go     = 256
          echo-node   = 320
          echo-python = 10
        }
      }
    }
  }
  meta {
    butter_auto_rollback = "true"
    butter_project       = "hello"
    butter_revision      = "f6de3c12eb86"
  }
}
