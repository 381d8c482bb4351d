package butter

import (
	"time"

	"github.com/butterfn/butter/sdk/go/proto"
)

// CallError is why a Call failed. Type is the callee's own error type
// (PreconditionFailed, PostconditionFailed, Exception, ...), Timeout when
// no reply came in time, CircuitOpen when the call was not sent because
// the target failed too often lately (its circuit breaker is open),
// Unavailable when it could not be sent, or empty when the pool refused
// the call (a target the function's spec does not declare in its calls
// list). Returned as is from a handler, it fails the handler's own call
// as an Exception: return ErrPreconditionFailed (or wrap it) to pass the
// callee's refusal on.
type CallError struct {
	Target  string
	Type    string
	Message string
}

func (e *CallError) Error() string {
	if e.Type == "" {
		return "call " + e.Target + ": " + e.Message
	}
	return "call " + e.Target + ": " + e.Type + ": " + e.Message
}

// Call sends value (keyed by key, which may be empty) to target, a
// function or a stream the function's spec lists in its calls ("scorer",
// or "function.scorer" and "stream.orders" where a function and a stream
// share a name), and waits up to timeout for the reply: the callee's
// output, or a *CallError. A timeout of 0 waits until the call's own
// deadline.
func (c *Call) Call(target, key string, value []byte, timeout time.Duration) ([]byte, error) {
	msg := proto.CallMsg{Op: "call", Index: c.index, Target: target, Key: key, Value: value}
	if timeout > 0 {
		msg.TimeoutMS = max(timeout.Milliseconds(), 1)
	}
	rep, err := c.w.call(c.id, msg)
	if err != nil {
		if rep.Seq == 0 {
			// Not answered: the pool closed the stream.
			return nil, err
		}
		return nil, &CallError{Target: target, Type: rep.ErrorType, Message: rep.Error}
	}
	return rep.Value, nil
}
