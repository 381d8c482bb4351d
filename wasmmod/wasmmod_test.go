package wasmmod_test

import (
	"context"
	"strings"
	"testing"

	"github.com/butterfn/butter/wasmmod"
)

// module returns a module that imports one function () -> () named
// mod.field, and exports no _start.
func module(mod, field string) []byte {
	imp := []byte{byte(len(mod))}
	imp = append(imp, mod...)
	imp = append(imp, byte(len(field)))
	imp = append(imp, field...)
	imp = append(imp, 0x00, 0x00)
	content := append([]byte{0x01}, imp...)
	out := []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x02")
	out = append(out, byte(len(content)))
	return append(out, content...)
}

// TestCheck: what a wasm function may import, and what is refused.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  []byte
		want string // "" for a module refused only for lacking _start
	}{
		{"wasi", module("wasi_snapshot_preview1", "fd_write"), ""},
		{"host emit", module("butter", "emit"), ""},
		{"host unknown", module("butter", "secret_get"), "imports [butter.secret_get]"},
		{"env", module("env", "foo"), "imports [env.foo]"},
		{"text", []byte("(module)"), "WebAssembly text (.wat)"},
		{"garbage", []byte("#!/bin/sh\n"), "not a WebAssembly binary module"},
		{"truncated", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01"), "not a valid WebAssembly module"},
	} {
		err := wasmmod.Check(context.Background(), "m.wasm", c.mod)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		want := c.want
		if want == "" {
			want = "exports no _start" // imports fine, but a library
		}
		if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "m.wasm ") {
			t.Errorf("%s: %v, want the file named and %q", c.name, err, want)
		}
	}
}
