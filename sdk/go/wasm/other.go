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

// State returns false: the module is not running in Butter's wasm
// runtime.
func State() ([]byte, bool) { return nil, false }

// StateKey returns "": the module is not running in Butter's wasm
// runtime.
func StateKey() string { return "" }

// SetState returns ErrNotInButter: the module is not running in Butter's
// wasm runtime.
func SetState(value []byte) error { return ErrNotInButter }

// DeleteState returns ErrNotInButter: the module is not running in
// Butter's wasm runtime.
func DeleteState() error { return ErrNotInButter }
