output "server_address" {
  value       = local.server_addr
  description = "The control plane's API as the gateways reach it: the Butter provider's address."
}

output "jobs" {
  value = concat(
    [for j in butter_nomad_job.broker : j.id],
    [butter_nomad_job.server.id, butter_nomad_job.gateway.id],
    [for j in butter_nomad_job.prometheus : j.id],
  )
  description = "The Nomad jobs the module registered."
}
