package pool

import (
	"strings"

	"github.com/butterfn/butter/sdk/go/proto"
	"github.com/hashicorp/go-hclog"
)

// logLevels are the levels a function's log call may name
// (docs/worker-protocol.md, "Context calls"), and the hclog level of each.
var logLevels = map[string]hclog.Level{
	"trace":   hclog.Trace,
	"debug":   hclog.Debug,
	"info":    hclog.Info,
	"warn":    hclog.Warn,
	"warning": hclog.Warn,
	"error":   hclog.Error,
}

// functionLog answers a function's log call (ctx.log in the SDKs): the
// message goes to the function's logger at the level the call names, so
// that a warning or an error of the function shows as one in the pool's
// log. A level it does not know (or none) logs at info and keeps the
// name given, as the attribute "level".
func functionLog(l hclog.Logger, call proto.CallMsg) proto.ReplyMsg {
	if level, ok := logLevels[strings.ToLower(strings.TrimSpace(call.Level))]; ok {
		l.Log(level, call.Message)
	} else {
		l.Info(call.Message, "level", call.Level)
	}
	return proto.ReplyMsg{OK: true}
}
