package butter

import "embed"

// Source is this SDK's own source tree (go.mod and the Go files). Pools
// embed it to build Go functions without fetching the SDK from a module
// proxy: the build's go.work points the SDK's module path at a copy of it.
//
//go:embed go.mod *.go proto/*.go
var Source embed.FS
