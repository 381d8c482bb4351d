// Command butter-sandbox is the shim the pool starts confined function
// instances through (package sandbox): `butter _sandbox` in a binary of its
// own, so that an instance start does not pay the full butter binary's
// start-up (about 14 ms of package initialisation, against about 1 ms
// here). The pool uses it when it lies beside the butter binary, and
// `butter _sandbox` otherwise.
package main

import (
	"os"

	"github.com/butterfn/butter/sandbox"
)

func main() { os.Exit(sandbox.Main(os.Args[1:])) }
