// Command echo-go is the hello example's Go function: the answer is the
// event's body, unchanged.
package main

import (
	"context"

	butter "github.com/butterfn/butter/sdk/go"
)

func echo(ctx context.Context, event []byte) ([]byte, error) { return event, nil }

func main() { butter.Serve(echo) }
