package runtime

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// HTTPSink is the runtime of `sink "http"` (hcl/spec/sink.go): each record
// of its stream is one request to the sink's URL, made in the pool's
// process. Its settings come in the call's options: url, method,
// header.<Name>, and signature, the secret (in the function's
// environment) whose HMAC-SHA256 of the body goes in Butter-Signature.
//
// The answer decides the record's fate, through the pool's rules for a
// function's errors: a 2xx delivered it (no output); a 4xx other than 408
// and 429 is the endpoint refusing the record, a PreconditionFailed, which
// is never retried and is dead-lettered with the endpoint's answer; a 408,
// 429, 5xx, a connection that fails or a deadline passing is an Exception
// (Timeout for the deadline), retried as the sink's retry block says and
// dead-lettered after its last attempt. The record's event id goes in
// Butter-Event-Id, the same on every attempt, for the endpoint to drop
// duplicates (delivery is at least once).
type HTTPSink struct {
	// Client makes the requests; nil uses one with no timeout of its own
	// (the call's deadline bounds each attempt).
	Client *http.Client
}

// Headers a sink sends of its own.
const (
	SinkEventID   = "Butter-Event-Id"
	SinkSignature = "Butter-Signature"
	SinkStream    = "Butter-Stream"
)

// sinkAnswerLimit is how much of an endpoint's answer an error keeps.
const sinkAnswerLimit = 2 << 10

// Start implements Runtime: the sink needs no process.
func (s HTTPSink) Start(ctx context.Context, fn *Function) (Instance, error) {
	c := s.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: max(fn.Concurrency, 2),
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &sinkInstance{fn: fn, client: c, exited: make(chan struct{})}, nil
}

type sinkInstance struct {
	fn     *Function
	client *http.Client
	exited chan struct{}
}

func (i *sinkInstance) Invoke(ctx context.Context, inv *Invocation) error {
	target := inv.Options["url"]
	if target == "" {
		return &proto.Error{Type: proto.Exception, Message: "sink " + i.fn.Name + " has no url"}
	}
	body, err := io.ReadAll(inv.Input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	method := inv.Options["method"]
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("sink %s: %v", i.fn.Name, err)}
	}
	for k, v := range inv.Options {
		if name, ok := strings.CutPrefix(k, "header."); ok {
			req.Header.Set(name, v)
		}
	}
	if ct := inv.Meta["content-type"]; ct != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ct)
	} else if ct := inv.Meta["ce_datacontenttype"]; ct != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", ct)
	}
	if id := inv.Meta["ce_id"]; id != "" {
		req.Header.Set(SinkEventID, id)
	}
	if pos := inv.Meta["butter.position"]; pos != "" {
		if j := strings.LastIndexByte(pos, '/'); j > 0 {
			if k := strings.LastIndexByte(pos[:j], '/'); k > 0 {
				req.Header.Set(SinkStream, pos[:k])
			}
		}
	}
	if name := inv.Options["signature"]; name != "" {
		key, ok := i.fn.Env[name]
		if !ok || key == "" {
			return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("sink %s signs with secret %s, which has no value", i.fn.Name, name)}
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		req.Header.Set(SinkSignature, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := i.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &proto.Error{Type: proto.Timeout, Message: fmt.Sprintf("%s %s: no answer before the deadline", method, redact(target))}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &proto.Error{Type: proto.Exception, Message: fmt.Sprintf("%s %s: %v", method, redact(target), unwrapURL(err))}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, sinkAnswerLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("%s %s answered %s", method, redact(target), resp.Status)
	if a := strings.TrimSpace(string(answer)); a != "" {
		msg += ": " + a
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &proto.Error{Type: proto.PreconditionFailed, Message: "the endpoint refused the record: " + msg}
	}
	return &proto.Error{Type: proto.Exception, Message: msg}
}

// redact drops a URL's credentials and query from messages.
func redact(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if at := strings.Index(u, "@"); at >= 0 {
		if s := strings.Index(u, "://"); s >= 0 && s < at {
			u = u[:s+3] + u[at+1:]
		}
	}
	return u
}

// unwrapURL drops the *url.Error's repetition of the method and URL.
func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func (i *sinkInstance) Stop(time.Duration) error {
	select {
	case <-i.exited:
	default:
		close(i.exited)
	}
	return nil
}

func (i *sinkInstance) Exited() <-chan struct{} { return i.exited }
func (i *sinkInstance) Pid() int                { return 0 }
