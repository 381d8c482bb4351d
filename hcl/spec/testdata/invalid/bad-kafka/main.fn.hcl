project "bad-kafka" {
  kafka {
    brokers = ["kafka-1", "kafka-2:9092"]
    sasl {
      mechanism    = "SCRAM-SHA-1"
      username     = "butter"
      password_env = "kafka password"
    }
  }
}

function "f" {
  runtime = "exec"
  command = ["cat"]
}
