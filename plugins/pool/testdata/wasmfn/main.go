//go:build wasip1

// The wasm test function (TestWasm), built with GOOS=wasip1 GOARCH=wasm:
// it answers its input in upper case, unless the input names something
// else to do.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

var sink [][]byte

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read stdin:", err)
		os.Exit(1)
	}
	switch cmd := string(bytes.TrimSpace(in)); cmd {
	case "panic":
		fmt.Fprintln(os.Stderr, "about to panic")
		panic("asked to panic")
	case "exit3":
		fmt.Fprintln(os.Stderr, "bad input: exit3")
		os.Exit(3)
	case "spin":
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
	case "alloc":
		for range 128 {
			sink = append(sink, make([]byte, 1<<20)) // 128 MiB, a MiB at a time
		}
		fmt.Print("allocated 128 MiB")
	case "env":
		fmt.Printf("function=%s method=%s args=%s\n", os.Getenv("BUTTER_FUNCTION"), os.Getenv("Http_Method"), strings.Join(os.Args[1:], " "))
	case "file":
		if _, err := os.ReadFile("/etc/passwd"); err != nil {
			fmt.Print("no file system: ", err)
			return
		}
		fmt.Print("read /etc/passwd")
	default:
		os.Stdout.Write(bytes.ToUpper(in))
	}
}
