//go:build wasip1

// The wasm test function (TestWasm), built with GOOS=wasip1 GOARCH=wasm:
// it answers its input in upper case, unless the input names something
// else to do.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/butterfn/butter/sdk/go/wasm"
)

var sink [][]byte

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read stdin:", err)
		os.Exit(1)
	}
	if bytes.HasPrefix(in, []byte(`{"target"`)) {
		call(in)
		return
	}
	if bytes.HasPrefix(in, []byte(`{"count"`)) {
		count(in)
		return
	}
	if name, ok := strings.CutPrefix(string(bytes.TrimSpace(in)), "env:"); ok {
		fmt.Print(os.Getenv(name)) // a secret reaches a module in its environment
		return
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
	case "emit":
		// Two events to the alerts stream through the host functions,
		// a log line, then the answer.
		if err := wasm.Log("warn", "emitting two alerts"); err != nil {
			fmt.Fprintln(os.Stderr, "log:", err)
			os.Exit(1)
		}
		for i, v := range []string{`{"n":1}`, `{"n":2}`} {
			if err := wasm.Emit("alerts", fmt.Sprintf("k%d", i+1), []byte(v)); err != nil {
				fmt.Fprintln(os.Stderr, "emit:", err)
				os.Exit(1)
			}
		}
		fmt.Print("emitted")
	case "emit-undeclared":
		err := wasm.Emit("nowhere", "", []byte("x"))
		fmt.Print("refused: ", err)
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

// call calls the target its JSON input names ({"target", "value",
// "timeout_ms"}) and answers {"ok": reply} or {"error": {type, message,
// name}}, as the other runtimes' test callers (testdata/callfn) do.
func call(in []byte) {
	var req struct {
		Target    string `json:"target"`
		Value     string `json:"value"`
		TimeoutMS int    `json:"timeout_ms"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		fmt.Fprintln(os.Stderr, "bad call input:", err)
		os.Exit(1)
	}
	reply, err := wasm.Call(req.Target, []byte(req.Value), time.Duration(req.TimeoutMS)*time.Millisecond)
	var out any
	var ce *wasm.CallError
	switch {
	case err == nil:
		out = map[string]any{"ok": string(reply)}
	case errors.As(err, &ce):
		var typ any
		if ce.Type != "" {
			typ = ce.Type
		}
		out = map[string]any{"error": map[string]any{"type": typ, "message": ce.Message, "name": "CallError"}}
	default:
		out = map[string]any{"error": map[string]any{"type": nil, "message": err.Error(), "name": "Error"}}
	}
	b, _ := json.Marshal(out)
	os.Stdout.Write(b)
}

// count keeps a counter per state key, as testdata/statefn does:
// {"count": 1, "device", "op"}: "read" answers the key and the state, "delete"
// deletes it, "bad" sets a value that is not JSON, anything else adds 1.
func count(in []byte) {
	var req struct {
		Op string `json:"op"`
	}
	_ = json.Unmarshal(in, &req)
	key := wasm.StateKey()
	switch req.Op {
	case "read":
		st, ok := wasm.State()
		if !ok {
			st = []byte("null")
		}
		fmt.Printf(`{"key":%q,"state":%s}`, key, st)
		return
	case "delete":
		if err := wasm.DeleteState(); err != nil {
			fmt.Fprintln(os.Stderr, "delete:", err)
			os.Exit(1)
		}
		fmt.Printf(`{"key":%q,"deleted":true}`, key)
		return
	case "bad":
		fmt.Print("refused: ", wasm.SetState([]byte("not json")))
		return
	}
	var st struct {
		N int `json:"n"`
	}
	if b, ok := wasm.State(); ok {
		_ = json.Unmarshal(b, &st)
	}
	st.N++
	b, _ := json.Marshal(st)
	if err := wasm.SetState(b); err != nil {
		fmt.Fprintln(os.Stderr, "set:", err)
		os.Exit(1)
	}
	fmt.Printf(`{"key":%q,"n":%d}`, key, st.N)
}
