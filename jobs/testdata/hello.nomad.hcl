job "butter-hello" {
  type = "service"
  group "default" {
    count = 1
    task "pool" {
      driver       = "butter"
      kill_timeout = "10s"
      config {
        pool     = "default"
        port     = "invoke"
        project  = "hello"
        revision = "3cc1540d5e91"
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
          bundle        = "local/bundles/f02f4acc352955018ef4d64e0753ac5c2ff9fdcbe197b51fa3245b1cdcfeb53e"
          concurrency   = 64
          cpu           = 100
          digest        = "sha256:f02f4acc352955018ef4d64e0753ac5c2ff9fdcbe197b51fa3245b1cdcfeb53e"
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
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/f02f4acc352955018ef4d64e0753ac5c2ff9fdcbe197b51fa3245b1cdcfeb53e"
        mode        = "dir"
        destination = "local/bundles/f02f4acc352955018ef4d64e0753ac5c2ff9fdcbe197b51fa3245b1cdcfeb53e"
        options {
          archive  = "tar"
          checksum = "sha256:f02f4acc352955018ef4d64e0753ac5c2ff9fdcbe197b51fa3245b1cdcfeb53e"
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
    network {
      port "invoke" {
      }
    }
    service {
      name     = "butter-hello-default"
      tags     = ["butter", "project=hello", "pool=default", "revision=3cc1540d5e91"]
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
      min     = 0
      max     = 10
      enabled = true
    }
  }
  meta {
    butter_project  = "hello"
    butter_revision = "3cc1540d5e91"
  }
}
