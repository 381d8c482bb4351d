output "revision" {
  value       = butter_project.this.revision
  description = "The active revision (a content hash)."
}

output "routes" {
  value       = butter_project.this.routes
  description = "The project's routes, \"METHOD /path -> target\"."
}

output "functions" {
  value       = butter_project.this.functions
  description = "Each function's fingerprint, by name."
}

output "api_keys" {
  value       = { for k, v in butter_api_key.this : k => v.key }
  sensitive   = true
  description = "The minted keys, by the names given in api_keys."
}

output "deploy_token" {
  value       = var.deploy_token ? butter_acl_token.deploy[0].secret_id : null
  sensitive   = true
  description = "The deploy token's secret, when deploy_token is set."
}
