// Protocol tests (proto_test.go): "log" logs one line at each level
// through the context; "<KiB>:<c>" answers <KiB> KiB of the character c;
// anything else is answered upper-cased.
package main

import (
	"bytes"
	"context"
	"strconv"

	butter "github.com/butterfn/butter/sdk/go"
)

func handle(ctx context.Context, in []byte) ([]byte, error) {
	if string(in) == "log" {
		for _, level := range []string{"debug", "info", "warn", "error"} {
			if err := butter.FromContext(ctx).Log(level, "go logs at "+level); err != nil {
				return nil, err
			}
		}
		return []byte("logged"), nil
	}
	if kib, c, ok := bytes.Cut(in, []byte(":")); ok && len(c) == 1 {
		if n, err := strconv.Atoi(string(kib)); err == nil {
			return bytes.Repeat(c, n*1024), nil
		}
	}
	return bytes.ToUpper(in), nil
}

func main() { butter.Serve(handle) }
