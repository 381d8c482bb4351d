// Command echo is the benchmarks' Go function: it answers its input
// unchanged. The in-process baseline of the overhead benchmark calls a
// copy of handle (harness.Echo), so the two must stay the same.
package main

import (
	"context"

	butter "github.com/butterfn/butter/sdk/go"
)

func handle(_ context.Context, in []byte) ([]byte, error) { return in, nil }

func main() { butter.Serve(handle) }
