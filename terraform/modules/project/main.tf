# A Butter project with its API keys and, optionally, an ACL policy and
# token that may deploy it (for a CI pipeline). docs/terraform.md.

terraform {
  required_providers {
    butter = {
      source = "butterfn/butter"
    }
  }
}

resource "butter_project" "this" {
  name         = var.name
  directory    = var.directory
  variables    = var.variables
  timeout      = var.timeout
  purge_topics = var.purge_topics
}

resource "butter_api_key" "this" {
  for_each = var.api_keys

  project = butter_project.this.id
  routes  = length(each.value) > 0 ? each.value : null
}

resource "butter_acl_policy" "deploy" {
  count = var.deploy_token ? 1 : 0

  name        = "${var.name}-deploy"
  description = "deploys of project ${var.name} (Terraform module project)"
  rules       = "project \"${var.name}\" { capabilities = [\"deploy\", \"read\"] }\n"
}

resource "butter_acl_token" "deploy" {
  count = var.deploy_token ? 1 : 0

  name     = "${var.name} deployer"
  policies = [butter_acl_policy.deploy[0].name]
}
