// Package wasmmod checks that a WebAssembly module can run as a Butter
// wasm function, before any pool starts it: `butter validate` (through
// hcl/spec) and the wasm runtime say why one cannot, in the same words.
// It decodes and validates the module with wazero's interpreter
// configuration, which compiles nothing to machine code, so a check is
// quick even for a large module.
package wasmmod

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// magic is the start of every WebAssembly binary module: "\0asm" and
// version 1.
var magic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// HostModule is the import module of the host functions the wasm runtime
// provides (docs/wasm.md, "The context API"), and HostFunctions their
// names.
const HostModule = "butter"

// HostFunctions are the functions of HostModule.
var HostFunctions = []string{"call", "emit", "last_error", "log", "reply", "state_delete", "state_get", "state_key", "state_set"}

// Build says how to build a module Butter runs.
const Build = "build a WASI preview 1 command: GOOS=wasip1 GOARCH=wasm go build -o fn.wasm, or cargo build --target wasm32-wasip1 (docs/wasm.md)"

// Check returns why the module b, read from the file named name, cannot
// run as a wasm function: not a WebAssembly binary, invalid, importing
// anything but WASI preview 1, or without a _start to run (a WASI
// command). nil means it can.
func Check(ctx context.Context, name string, b []byte) error {
	if !bytes.HasPrefix(b, magic) {
		if bytes.HasPrefix(b, []byte("(module")) {
			return fmt.Errorf("%s is WebAssembly text (.wat), not a binary module: assemble it (wat2wasm), or %s", name, Build)
		}
		return fmt.Errorf("%s is not a WebAssembly binary module (it does not start with \\0asm version 1): %s", name, Build)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		return fmt.Errorf("%s is not a valid WebAssembly module: %v", name, err)
	}
	defer cm.Close(ctx)
	var foreign []string
	for _, f := range cm.ImportedFunctions() {
		mod, fn, _ := f.Import()
		if mod == wasi_snapshot_preview1.ModuleName || mod == HostModule && slices.Contains(HostFunctions, fn) {
			continue
		}
		foreign = append(foreign, mod+"."+fn)
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		return fmt.Errorf("%s imports %v: a wasm function may import only WASI preview 1 (%s) and Butter's host functions (%s: %s); %s", name, foreign, wasi_snapshot_preview1.ModuleName, HostModule, strings.Join(HostFunctions, ", "), Build)
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return fmt.Errorf("%s exports no _start function, so it is a library, not a command: %s", name, Build)
	}
	return nil
}
