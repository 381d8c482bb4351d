//go:build tools

// Package vault pins the Vault binary that Butter's tests run against
// (bin/vault, built by `make tools`). It is a module of its own, apart
// from tools/go.mod (Nomad), because the two dependency graphs do not
// agree, and neither may leak into Butter's own go.mod.
package vault

import (
	_ "github.com/hashicorp/vault"
)
