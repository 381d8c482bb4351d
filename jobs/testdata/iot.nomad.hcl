job "butter-iot" {
  type = "service"
  group "batch" {
    count          = 1
    shutdown_delay = "2s"
    task "pool" {
      driver       = "butter"
      kill_timeout = "10m5s"
      config {
        pool     = "batch"
        port     = "invoke"
        project  = "iot"
        revision = "ec10a87f4567"
        function {
          bundle        = "local/bundles/197659a79e8fff3cdc72e8d968edba97c8b6fd8b205bcc0c43643b60356028b0"
          command       = ["./report.sh"]
          concurrency   = 1
          cpu           = 100
          digest        = "sha256:197659a79e8fff3cdc72e8d968edba97c8b6fd8b205bcc0c43643b60356028b0"
          max_instances = 10
          memory        = 256
          min_instances = 0
          name          = "nightly"
          output        = "iot.reports"
          runtime       = "exec"
          timeout       = "10m0s"
          stream {
            group  = "butter.iot.nightly._timers"
            offset = "first"
            stream = "iot._timers.nightly"
          }
        }
        topic {
          name       = "iot.alerts"
          partitions = 3
          retention  = "720h0m0s"
        }
        topic {
          name       = "iot.failed-readings"
          partitions = 3
          retention  = "336h0m0s"
        }
        topic {
          name       = "iot.readings"
          partitions = 6
          retention  = "168h0m0s"
          schema     = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
        }
        topic {
          name       = "iot.reports"
          partitions = 1
          retention  = "2160h0m0s"
        }
        topic {
          name       = "iot._timers.nightly"
          partitions = 1
        }
      }
      resources {
        cpu        = 200
        memory     = 320
        memory_max = 2624
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb"
        mode        = "file"
        destination = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
        options {
          archive  = "false"
          checksum = "sha256:8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb"
        }
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/197659a79e8fff3cdc72e8d968edba97c8b6fd8b205bcc0c43643b60356028b0"
        mode        = "dir"
        destination = "local/bundles/197659a79e8fff3cdc72e8d968edba97c8b6fd8b205bcc0c43643b60356028b0"
        options {
          archive  = "tar"
          checksum = "sha256:197659a79e8fff3cdc72e8d968edba97c8b6fd8b205bcc0c43643b60356028b0"
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
      name     = "butter-iot-batch"
      tags     = ["butter", "project=iot", "pool=batch", "revision=ec10a87f4567"]
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
        consumer_groups = ["butter.iot.nightly._timers"]
        cooldown        = "30s"
        scale_in_delay  = "5m0s"
        streams         = ["butter.iot.nightly._timers iot._timers.nightly first"]
        target_inflight = 0.7
        target_lag      = 1000
        capacity {
          nightly = 10
        }
      }
    }
  }
  group "default" {
    count          = 1
    shutdown_delay = "2s"
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
        project  = "iot"
        revision = "ec10a87f4567"
        function {
          bundle        = "local/bundles/00e332754ff1fb6ec36d479d62946c5deb4fbcae3df8934357e1035850366965"
          concurrency   = 1
          cpu           = 100
          dead_letter   = "iot.failed-readings"
          digest        = "sha256:00e332754ff1fb6ec36d479d62946c5deb4fbcae3df8934357e1035850366965"
          handler       = "detect.handle"
          max_instances = 10
          memory        = 128
          min_instances = 0
          name          = "detect"
          output        = "iot.alerts"
          runtime       = "python"
          timeout       = "2s"
          retry {
            attempts    = 3
            backoff     = "1s"
            max_backoff = "32s"
          }
          state {
            key = "device"
            ttl = "720h0m0s"
          }
          stream {
            exactly_once = true
            group        = "butter.iot.detect.readings"
            offset       = "first"
            schema       = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
            stream       = "iot.readings"
          }
        }
        function {
          bundle        = "local/bundles/f3e31b8233d93120f2fc5292d81461b8be496439b6973b8c0b6d27911136a282"
          concurrency   = 8
          cpu           = 100
          digest        = "sha256:f3e31b8233d93120f2fc5292d81461b8be496439b6973b8c0b6d27911136a282"
          emits         = ["iot.readings"]
          handler       = "index.handle"
          input_schema  = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
          max_instances = 50
          memory        = 64
          min_instances = 1
          name          = "ingest"
          runtime       = "node"
          timeout       = "5s"
        }
        topic {
          name       = "iot.alerts"
          partitions = 3
          retention  = "720h0m0s"
        }
        topic {
          name       = "iot.failed-readings"
          partitions = 3
          retention  = "336h0m0s"
        }
        topic {
          name       = "iot.readings"
          partitions = 6
          retention  = "168h0m0s"
          schema     = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
        }
        topic {
          name       = "iot.reports"
          partitions = 1
          retention  = "2160h0m0s"
        }
        topic {
          name       = "iot._timers.nightly"
          partitions = 1
        }
      }
      resources {
        cpu        = 300
        memory     = 256
        memory_max = 4544
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb"
        mode        = "file"
        destination = "local/schemas/8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb.json"
        options {
          archive  = "false"
          checksum = "sha256:8912abae4b878e84a75bd41a661853f927b4dc70f74bbb5c1590b180460e0dbb"
        }
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/00e332754ff1fb6ec36d479d62946c5deb4fbcae3df8934357e1035850366965"
        mode        = "dir"
        destination = "local/bundles/00e332754ff1fb6ec36d479d62946c5deb4fbcae3df8934357e1035850366965"
        options {
          archive  = "tar"
          checksum = "sha256:00e332754ff1fb6ec36d479d62946c5deb4fbcae3df8934357e1035850366965"
        }
      }
      artifact {
        source      = "http://127.0.0.1:4750/v1/blobs/sha256/f3e31b8233d93120f2fc5292d81461b8be496439b6973b8c0b6d27911136a282"
        mode        = "dir"
        destination = "local/bundles/f3e31b8233d93120f2fc5292d81461b8be496439b6973b8c0b6d27911136a282"
        options {
          archive  = "tar"
          checksum = "sha256:f3e31b8233d93120f2fc5292d81461b8be496439b6973b8c0b6d27911136a282"
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
      name     = "butter-iot-default"
      tags     = ["butter", "project=iot", "pool=default", "revision=ec10a87f4567"]
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
        consumer_groups = ["butter.iot.detect.readings"]
        cooldown        = "30s"
        scale_in_delay  = "5m0s"
        streams         = ["butter.iot.detect.readings iot.readings first"]
        target_inflight = 0.7
        target_lag      = 1000
        capacity {
          detect = 10
          ingest = 400
        }
      }
    }
  }
  meta {
    butter_auto_rollback = "true"
    butter_project       = "iot"
    butter_revision      = "ec10a87f4567"
  }
}
