// Command contract is the HTTP contract in Go (gateway TestHTTPContract):
// the request as Call.Request, the answer's status and headers through
// Call.SetStatus and Call.Header.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	butter "github.com/butterfn/butter/sdk/go"
)

func handle(ctx context.Context, in []byte) ([]byte, error) {
	c := butter.FromContext(ctx)
	switch c.Options["mode"] {
	case "refuse":
		return nil, fmt.Errorf("refused on purpose: %w", butter.ErrPreconditionFailed)
	case "create":
		var item struct{ Name string }
		if err := json.Unmarshal(in, &item); err != nil {
			return nil, fmt.Errorf("%v: %w", err, butter.ErrPreconditionFailed)
		}
		c.SetStatus(201)
		c.Header().Set("Location", "/items/"+item.Name)
		c.Header().Add("X-Multi", "a")
		c.Header().Add("X-Multi", "b")
		c.Header().Set("Content-Type", "application/json")
		return json.Marshal(map[string]string{"created": item.Name})
	case "notfound":
		c.SetStatus(404)
		c.Header().Set("X-Step", "go")
		return []byte("no such item"), nil
	case "tag":
		c.Header().Set("X-Tag", "go")
		return in, nil
	}
	r := c.Request()
	if r == nil {
		return []byte(`{"request":null}`), nil
	}
	var auth any
	if v := r.Header.Get("Authorization"); v != "" {
		auth = v
	}
	nilIfEmpty := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	return json.Marshal(map[string]any{"method": r.Method, "path": r.Path, "route": r.Route, "params": r.Params,
		"rawQuery": r.RawQuery, "query": r.Query, "custom": nilIfEmpty(r.Header.Get("X-Custom")), "hop": nilIfEmpty(r.Header.Get("X-Hop")),
		"auth": auth, "remote": r.RemoteAddr, "requestId": r.RequestID, "traceparent": r.Traceparent, "body": string(in)})
}

func main() { butter.Serve(handle) }
