//go:build !wasip1

package wasm

import "time"

// Log returns ErrNotInButter: the module is not running in Butter's wasm
// runtime.
func Log(level, message string) error { return ErrNotInButter }

// Emit returns ErrNotInButter: the module is not running in Butter's
// wasm runtime.
func Emit(stream, key string, value []byte) error { return ErrNotInButter }

// Call returns ErrNotInButter: the module is not running in Butter's
// wasm runtime.
func Call(target string, value []byte, timeout time.Duration) ([]byte, error) {
	return nil, ErrNotInButter
}
