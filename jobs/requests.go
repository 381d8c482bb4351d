package jobs

import (
	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/names"
	"github.com/butterfn/butter/plugins/pool"
)

// Queued and async http triggers reach their function through Kafka: the
// gateway produces each call to the function's request topic, with a
// reply-to header, and the pool consumes the topic like a stream and
// produces the reply (docs/gateway.md, docs/events.md).

// RequestPartitions is the partition count of a request topic.
const RequestPartitions = 3

// HasQueuedTrigger reports whether a function has an http trigger in
// queued or async mode.
func HasQueuedTrigger(f *spec.Function) bool {
	for _, t := range f.Triggers {
		if t.Type == spec.TriggerHTTP && (t.Mode == "queued" || t.Mode == "async") {
			return true
		}
	}
	return false
}

// requestTrigger is the stream block through which a function consumes
// its requests. A new group starts at the first request, so that none
// made while the pool was starting is lost; the pool skips requests whose
// caller's deadline has passed.
func requestTrigger(project, function string) pool.StreamTrigger {
	return pool.StreamTrigger{
		Stream: names.RequestTopic(project, function),
		Group:  names.RequestGroup(project, function),
		Offset: string(spec.OffsetFirst),
	}
}
