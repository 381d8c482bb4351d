package jobs

import (
	"github.com/butterfn/butter/names"
	"strconv"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
)

// Cron triggers reach functions through Kafka: the control plane's timer
// service produces each tick to the function's tick topic, and the pool
// consumes that topic like a stream, with its own consumer group. A tick
// therefore gets the delivery, retries and dead letters of a stream event,
// and is not lost while the pool restarts.

// Timer is one cron trigger of a project, as the control plane's timer
// service fires it: each tick is produced to Topic, keyed by ID.
type Timer struct {
	// ID is "<project>.<function>.<n>", n counting the function's cron
	// triggers from 0 in the order the spec declares them.
	ID       string `json:"id"`
	Function string `json:"function"`
	// Schedule and Timezone are the trigger's, as spec.ParseCron takes
	// them; Timezone is empty for UTC.
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone,omitempty"`
	// Topic is the function's tick topic, names.TimerTopic(project, function).
	Topic string `json:"topic"`
}

// Timers returns one Timer per cron trigger of the project's functions,
// in function name order, then declaration order. A pipeline's cron
// triggers are not included.
func Timers(p *spec.Project) []Timer {
	var out []Timer
	for _, f := range p.Functions {
		n := 0
		for _, t := range f.Triggers {
			if t.Type != spec.TriggerCron {
				continue
			}
			out = append(out, Timer{
				ID:       p.Name + "." + f.Name + "." + strconv.Itoa(n),
				Function: f.Name,
				Schedule: t.Schedule,
				Timezone: t.Timezone,
				Topic:    names.TimerTopic(p.Name, f.Name),
			})
			n++
		}
	}
	return out
}

// hasCronTrigger reports whether the function has a cron trigger, and so
// consumes a tick topic.
func hasCronTrigger(f *spec.Function) bool {
	for _, t := range f.Triggers {
		if t.Type == spec.TriggerCron {
			return true
		}
	}
	return false
}

// timerTrigger is the stream block through which a function consumes its
// ticks. A new group starts from the first tick, so that ticks fired
// before the pool first came up still run.
func timerTrigger(project, function string) pool.StreamTrigger {
	return pool.StreamTrigger{
		Stream: names.TimerTopic(project, function),
		Group:  names.TimerGroup(project, function),
		Offset: string(spec.OffsetFirst),
	}
}
