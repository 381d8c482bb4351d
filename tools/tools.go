//go:build tools

// Package tools pins the Nomad binary that Butter's tests run against.
// It is a separate module so that Nomad's large dependency graph never
// leaks into Butter's own go.mod.
package tools

import (
	_ "github.com/hashicorp/nomad"
)
