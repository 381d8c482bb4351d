//go:build tools

// Package tools pins the OpenTofu binary that the Terraform provider's
// tests run (e2e/terraform). It is a module of its own, apart from Nomad's
// and Vault's, because OpenTofu needs its own fork of hcl/v2.
package tools

import (
	_ "github.com/opentofu/opentofu/cmd/tofu"
)
