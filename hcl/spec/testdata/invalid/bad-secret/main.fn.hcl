function "f" {
  runtime = "exec"
  command = ["cat"]
  secret "DB_PASSWORD" {
    vault = "kv/data/db"
  }
  secret "db-user" {
    vault = "kv/data/db#user"
  }
}
