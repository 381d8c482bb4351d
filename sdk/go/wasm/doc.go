// Package wasm is the context API of Butter's wasm runtime for functions
// written in Go and compiled with GOOS=wasip1 GOARCH=wasm: a function is
// a WASI command whose main reads its input from stdin and writes its
// output to stdout, and calls Emit and Log here to emit events to the
// project's streams and write to its log. They call the host functions
// the pool provides in the import module "butter" (docs/wasm.md has the
// ABI, for other languages). Built for any other platform, they return
// ErrNotInButter, so a function's code can be tested natively.
package wasm

import "errors"

// ErrNotInButter is returned by every function of this package when the
// module does not run in Butter's wasm runtime.
var ErrNotInButter = errors.New("not running in Butter's wasm runtime (GOOS=wasip1 GOARCH=wasm, in a pool)")
