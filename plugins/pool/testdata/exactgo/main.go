// Command exactgo is exactfn (index.js, main.py) in Go: outputs, emits
// and metadata (issue 16, items 2 and 6); the input, JSON, says what to
// do.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	butter "github.com/butterfn/butter/sdk/go"
)

var (
	mu     sync.Mutex
	failed = map[string]bool{}
)

type job struct {
	ID       string `json:"id"`
	N        int    `json:"n"`
	Emits    int    `json:"emits"`
	FailOnce bool   `json:"fail_once"`
	Fail     bool   `json:"fail"`
	Meta     bool   `json:"meta"`
	Keyed    bool   `json:"keyed"`
}

func handle(ctx context.Context, in []byte) ([]byte, error) {
	var j job
	if err := json.Unmarshal(in, &j); err != nil {
		return nil, err
	}
	c := butter.FromContext(ctx)
	for i := range j.Emits {
		if err := c.Emit("side", "", fmt.Appendf(nil, "emit %d of %s", i, j.ID)); err != nil {
			return nil, err
		}
	}
	if j.Fail {
		return nil, fmt.Errorf("%w: refused %s", butter.ErrPreconditionFailed, j.ID)
	}
	e := c.Event()
	if j.FailOnce {
		mu.Lock()
		first := !failed[e.ID]
		failed[e.ID] = true
		mu.Unlock()
		if first {
			return nil, fmt.Errorf("first attempt of %s fails", j.ID)
		}
	}
	if j.Meta {
		// As the Node and Python SDKs name them.
		var http any
		if e.HTTP != nil {
			http = map[string]any{"method": e.HTTP.Method, "path": e.HTTP.Path, "query": e.HTTP.Query, "headers": e.HTTP.Headers}
		}
		ttl := any(nil)
		if e.TTL > 0 {
			ttl = c.Meta["ce_ttl"] // as written; e.TTL is the duration
		}
		m := map[string]any{"id": e.ID, "source": e.Source, "type": e.Type, "subject": e.Subject, "stream": e.Stream,
			"partition": e.Partition, "offset": e.Offset, "ttl": ttl, "traceparent": e.Traceparent, "http": http,
			"time": c.Meta["ce_time"]}
		return json.Marshal(m)
	}
	switch j.N {
	case 0:
		return nil, nil
	case 1:
		return fmt.Appendf(nil, "out 0 of %s", j.ID), nil
	}
	outs := make([]any, j.N)
	for i := range outs {
		outs[i] = fmt.Sprintf("out %d of %s", i, j.ID)
	}
	if j.Keyed {
		outs[j.N-1] = butter.Keyed{Key: "other", Value: outs[j.N-1]}
	}
	return butter.Outputs(outs...)
}

func main() { butter.Serve(handle) }
