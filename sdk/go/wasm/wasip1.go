//go:build wasip1

package wasm

import (
	"errors"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport butter log
func hostLog(levelPtr unsafe.Pointer, levelLen uint32, msgPtr unsafe.Pointer, msgLen uint32) int32

//go:wasmimport butter emit
func hostEmit(streamPtr unsafe.Pointer, streamLen uint32, keyPtr unsafe.Pointer, keyLen uint32, valuePtr unsafe.Pointer, valueLen uint32) int32

//go:wasmimport butter last_error
func hostLastError(bufPtr unsafe.Pointer, bufLen uint32) uint32

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func lastError() error {
	buf := make([]byte, 256)
	n := hostLastError(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = hostLastError(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	}
	return errors.New(string(buf[:min(int(n), len(buf))]))
}

// Log writes message to the function's log at level (trace, debug,
// info, warn or error), with the call's request id, as ctx.log does in
// the other SDKs.
func Log(level, message string) error {
	lp, ll := str(level)
	mp, ml := str(message)
	if hostLog(lp, ll, mp, ml) != 0 {
		return lastError()
	}
	return nil
}

// Emit sends value to the project's stream, keyed by key (empty: the
// input's key). It returns once the pool has accepted the event; an
// event's id derives from the input's and the emit's place among the
// call's emits, as in the other SDKs (docs/events.md, "Ids"). A stream
// the function does not declare in its emits (or output) is refused.
func Emit(stream, key string, value []byte) error {
	sp, sl := str(stream)
	kp, kl := str(key)
	if hostEmit(sp, sl, kp, kl, unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value))) != 0 {
		return lastError()
	}
	return nil
}

//go:wasmimport butter call
func hostCallTarget(targetPtr unsafe.Pointer, targetLen uint32, valuePtr unsafe.Pointer, valueLen uint32, timeoutMS uint32) int32

//go:wasmimport butter reply
func hostReply(bufPtr unsafe.Pointer, bufLen uint32) uint32

// Call sends value to target, a function or stream of the function's
// calls list ("function.NAME", "stream.NAME", or a bare NAME), and
// returns its reply, waiting at most timeout (0: until the call's own
// deadline), as ctx.call does in the other SDKs. A failure of the callee
// or of the call is a *CallError with its type (the callee's error type,
// Timeout, CircuitOpen, ...); a call refused before it was sent (an
// undeclared target) has an empty Type.
func Call(target string, value []byte, timeout time.Duration) ([]byte, error) {
	tp, tl := str(target)
	if hostCallTarget(tp, tl, unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)), uint32(timeout.Milliseconds())) != 0 {
		return nil, callError(lastError().Error())
	}
	buf := make([]byte, 4096)
	n := hostReply(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = hostReply(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	}
	return buf[:n], nil
}

// callError reads the host's reason, "<Type>: <message>" or a refusal.
func callError(reason string) *CallError {
	if t, msg, ok := strings.Cut(reason, ": "); ok && t != "" && !strings.ContainsAny(t, " .") {
		return &CallError{Type: t, Message: msg}
	}
	return &CallError{Message: reason}
}

//go:wasmimport butter state_get
func hostStateGet(bufPtr unsafe.Pointer, bufLen uint32) int32

//go:wasmimport butter state_key
func hostStateKey(bufPtr unsafe.Pointer, bufLen uint32) uint32

//go:wasmimport butter state_set
func hostStateSet(valuePtr unsafe.Pointer, valueLen uint32) int32

//go:wasmimport butter state_delete
func hostStateDelete() int32

// State returns the call's state (JSON), as this call last set it or as
// it began, and false when there is none (none yet for the key, deleted,
// or the function has no state block; docs/state.md).
func State() ([]byte, bool) {
	buf := make([]byte, 1024)
	n := hostStateGet(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	if n < 0 {
		return nil, false
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = hostStateGet(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	}
	return buf[:n], true
}

// StateKey returns the call's state key, "" when it has none.
func StateKey() string {
	buf := make([]byte, 256)
	n := hostStateKey(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = hostStateKey(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
	}
	return string(buf[:n])
}

// SetState sets the call's state to value (JSON), applied when the call
// succeeds. A call without a state key, or a value that is not JSON, is
// refused.
func SetState(value []byte) error {
	if hostStateSet(unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value))) != 0 {
		return lastError()
	}
	return nil
}

// DeleteState deletes the call's state when the call succeeds.
func DeleteState() error {
	if hostStateDelete() != 0 {
		return lastError()
	}
	return nil
}
