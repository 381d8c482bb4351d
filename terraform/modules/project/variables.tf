variable "name" {
  type        = string
  description = "The project's name, as its spec's project block sets it."
}

variable "directory" {
  type        = string
  description = "The project's directory of spec files and sources (use path.module or path.root)."
}

variable "variables" {
  type        = map(string)
  default     = {}
  description = "Values of the variables the project's specs declare (variable blocks, var.NAME), by name, as butter deploy -var sets them."
}

variable "timeout" {
  type        = string
  default     = "10m"
  description = "How long an apply waits for the deployment to be healthy (a Go duration)."
}

variable "purge_topics" {
  type        = bool
  default     = false
  description = "Whether destroying the project deletes its Kafka topics too."
}

variable "api_keys" {
  type        = map(list(string))
  default     = {}
  description = "API keys to mint, by a name of yours: the routes (\"METHOD /path\") each may call, [] for every route."
}

variable "deploy_token" {
  type        = bool
  default     = false
  description = "Whether to create an ACL policy \"<name>-deploy\" (deploy and read on this project) and a token bound to it."
}
