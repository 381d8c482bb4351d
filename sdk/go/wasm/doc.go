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

// CallError is a failed Call: Type is the failure's type (the callee's
// own error type, Timeout, CircuitOpen, ...), empty when the call was
// refused before it was sent (an undeclared target).
type CallError struct {
	Type    string
	Message string
}

func (e *CallError) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}
