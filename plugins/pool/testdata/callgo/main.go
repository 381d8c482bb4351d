// Command callgo calls the target its JSON input names ({"target",
// "value", "timeout_ms"}) with Call.Call and answers {"ok": reply} or
// {"error": {type, message, name}}, the error as the handler got it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	butter "github.com/butterfn/butter/sdk/go"
)

func handle(ctx context.Context, in []byte) ([]byte, error) {
	var req struct {
		Target    string `json:"target"`
		Value     string `json:"value"`
		TimeoutMS int64  `json:"timeout_ms"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", butter.ErrPreconditionFailed, err)
	}
	out, err := butter.FromContext(ctx).Call(req.Target, "", []byte(req.Value), time.Duration(req.TimeoutMS)*time.Millisecond)
	if err != nil {
		var ce *butter.CallError
		if !errors.As(err, &ce) {
			return nil, err
		}
		return json.Marshal(map[string]any{"error": map[string]any{"type": ce.Type, "message": ce.Message, "name": "CallError"}})
	}
	return json.Marshal(map[string]string{"ok": string(out)})
}

func main() { butter.Serve(handle) }
