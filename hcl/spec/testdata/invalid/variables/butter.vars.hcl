timeout = "10s"
undeclared = 1
