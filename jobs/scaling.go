package jobs

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/hcl/spec"
	"github.com/butterfn/butter/plugins/pool"
	"github.com/hashicorp/nomad/api"
)

// A pool's scaling block (hcl/spec's pool "name" { scaling { ... } })
// becomes its task group's Nomad scaling block: min, max and enabled as
// Nomad knows them, and a policy map that Butter's autoscaler reads (Nomad
// keeps it without reading it, and shows it with `nomad scaling policy
// info`). ScalingPolicy is that map's one shape: Compile writes it,
// Check and the autoscaler read it back with ParseScalingPolicy.

// The keys of a task group's scaling policy map.
const (
	PolicyCooldown       = "cooldown"
	PolicyScaleInDelay   = "scale_in_delay"
	PolicyTargetInFlight = "target_inflight"
	PolicyTargetLag      = "target_lag"
	// PolicyTargetCPU and PolicyTargetMemory are the fractions of one
	// allocation's reserved CPU and memory its pool may use.
	PolicyTargetCPU    = "target_cpu"
	PolicyTargetMemory = "target_memory"
	// PolicyCapacity maps each function of the pool to the calls one
	// allocation can run at once: instances max × concurrency.
	PolicyCapacity = "capacity"
	// PolicyConsumerGroups lists the pool's Kafka consumer groups, whose
	// lag is the lag signal.
	PolicyConsumerGroups = "consumer_groups"
	// PolicyStreams lists what the pool's consumer groups consume, each
	// "<group> <topic> <offset>" with the trigger's offset (first,
	// latest, an offset or an RFC 3339 time): a group that never
	// committed on a topic has the records from that offset as its lag.
	PolicyStreams = "streams"
)

// ConsumedStream is a topic one of a pool's consumer groups consumes, and
// where the group starts when it has no committed offset.
type ConsumedStream struct {
	Group, Topic, Offset string
}

// ScalingPolicy is a task group's scaling policy, as the autoscaler uses
// it.
type ScalingPolicy struct {
	Enabled  bool
	Min, Max int
	// Cooldown is the least time between two scaling steps.
	Cooldown time.Duration
	// ScaleInDelay is how long the desired count must stay below the
	// current one before the count goes down.
	ScaleInDelay time.Duration
	// TargetInFlight is the fraction of a function's capacity that calls
	// in flight may use; 0 ignores the signal.
	TargetInFlight float64
	// TargetLag is the consumer lag one allocation may carry; 0 ignores
	// the signal.
	TargetLag float64
	// TargetCPU and TargetMemory are the fractions of one allocation's
	// reserved CPU and memory (Nomad's allocation stats) its pool may
	// use; 0 ignores the signal.
	TargetCPU, TargetMemory float64
	// Capacity is, per function, the calls one allocation runs at once.
	Capacity map[string]int
	// ConsumerGroups are the pool's Kafka consumer groups, sorted.
	ConsumerGroups []string
	// Streams are the topics the groups consume, sorted.
	Streams []ConsumedStream
}

// scalingBlock is a group's Nomad scaling block for the pool's policy.
func scalingBlock(s spec.Scaling, cfg *pool.Config) *api.ScalingPolicy {
	sp := ScalingPolicy{
		Enabled:        s.Enabled,
		Min:            s.Min,
		Max:            s.Max,
		Cooldown:       s.Cooldown,
		ScaleInDelay:   s.ScaleInDelay,
		TargetInFlight: s.Targets[spec.SignalInFlight],
		TargetLag:      s.Targets[spec.SignalLag],
		TargetCPU:      s.Targets[spec.SignalCPU],
		TargetMemory:   s.Targets[spec.SignalMemory],
		Capacity:       map[string]int{},
	}
	groups := map[string]bool{}
	for _, f := range cfg.Functions {
		sp.Capacity[f.Name] = max(f.MaxInstances, 1) * max(f.Concurrency, 1)
		for _, st := range f.Streams {
			groups[st.Group] = true
			sp.Streams = append(sp.Streams, ConsumedStream{Group: st.Group, Topic: st.Stream, Offset: st.Offset})
		}
	}
	sort.Slice(sp.Streams, func(i, j int) bool {
		a, b := sp.Streams[i], sp.Streams[j]
		return a.Group+" "+a.Topic < b.Group+" "+b.Topic
	})
	for g := range groups {
		sp.ConsumerGroups = append(sp.ConsumerGroups, g)
	}
	sort.Strings(sp.ConsumerGroups)
	return sp.Block()
}

// Block renders the policy as a Nomad scaling block.
func (sp ScalingPolicy) Block() *api.ScalingPolicy {
	policy := map[string]any{
		PolicyCooldown:     sp.Cooldown.String(),
		PolicyScaleInDelay: sp.ScaleInDelay.String(),
	}
	if sp.TargetInFlight > 0 {
		policy[PolicyTargetInFlight] = sp.TargetInFlight
	}
	if sp.TargetLag > 0 {
		policy[PolicyTargetLag] = sp.TargetLag
	}
	if sp.TargetCPU > 0 {
		policy[PolicyTargetCPU] = sp.TargetCPU
	}
	if sp.TargetMemory > 0 {
		policy[PolicyTargetMemory] = sp.TargetMemory
	}
	if len(sp.Capacity) > 0 {
		capacity := map[string]any{}
		for f, n := range sp.Capacity {
			capacity[f] = n
		}
		// A list of one map: how Nomad's jobspec reads a block of
		// free-form keys (capacity { f = 10 }), so the HCL and JSON
		// renderings give Nomad the same policy.
		policy[PolicyCapacity] = []map[string]any{capacity}
	}
	if len(sp.ConsumerGroups) > 0 {
		policy[PolicyConsumerGroups] = append([]string(nil), sp.ConsumerGroups...)
	}
	if len(sp.Streams) > 0 {
		streams := make([]string, len(sp.Streams))
		for i, st := range sp.Streams {
			streams[i] = st.Group + " " + st.Topic + " " + st.Offset
		}
		policy[PolicyStreams] = streams
	}
	return &api.ScalingPolicy{
		Enabled: new(sp.Enabled),
		Min:     new(int64(sp.Min)),
		Max:     new(int64(sp.Max)),
		Policy:  policy,
	}
}

// ParseScalingPolicy reads a task group's scaling block as Compile writes
// it, or as Nomad gives it back (numbers as float64, lists as []any). It
// refuses what Compile cannot have written: an unknown key, a value of
// the wrong type, a negative duration, min above max.
func ParseScalingPolicy(s *api.ScalingPolicy) (ScalingPolicy, error) {
	var sp ScalingPolicy
	if s == nil {
		return sp, fmt.Errorf("no scaling block")
	}
	sp.Enabled = s.Enabled == nil || *s.Enabled
	if s.Min == nil || s.Max == nil {
		return sp, fmt.Errorf("scaling block without min and max")
	}
	sp.Min, sp.Max = int(*s.Min), int(*s.Max)
	if sp.Min < 0 || sp.Max < 0 {
		return sp, fmt.Errorf("scaling min %d, max %d: negative", sp.Min, sp.Max)
	}
	if sp.Min > sp.Max {
		return sp, fmt.Errorf("scaling min %d is greater than max %d", sp.Min, sp.Max)
	}
	keys := make([]string, 0, len(s.Policy))
	for k := range s.Policy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.Policy[k]
		var err error
		switch k {
		case PolicyCooldown:
			sp.Cooldown, err = policyDuration(v)
		case PolicyScaleInDelay:
			sp.ScaleInDelay, err = policyDuration(v)
		case PolicyTargetInFlight:
			sp.TargetInFlight, err = policyNumber(v)
			if err == nil && (sp.TargetInFlight <= 0 || sp.TargetInFlight > 1) {
				err = fmt.Errorf("%g is not above 0 and at most 1", sp.TargetInFlight)
			}
		case PolicyTargetLag:
			sp.TargetLag, err = policyNumber(v)
			if err == nil && sp.TargetLag <= 0 {
				err = fmt.Errorf("%g is not above 0", sp.TargetLag)
			}
		case PolicyTargetCPU, PolicyTargetMemory:
			var f float64
			if f, err = policyNumber(v); err == nil && (f <= 0 || f > 1) {
				err = fmt.Errorf("%g is not above 0 and at most 1", f)
			}
			if k == PolicyTargetCPU {
				sp.TargetCPU = f
			} else {
				sp.TargetMemory = f
			}
		case PolicyCapacity:
			sp.Capacity, err = policyCapacity(v)
		case PolicyConsumerGroups:
			sp.ConsumerGroups, err = policyStrings(v)
		case PolicyStreams:
			var list []string
			if list, err = policyStrings(v); err == nil {
				for _, e := range list {
					f := strings.Fields(e)
					if len(f) != 3 {
						err = fmt.Errorf("%q is not \"<group> <topic> <offset>\"", e)
						break
					}
					sp.Streams = append(sp.Streams, ConsumedStream{Group: f[0], Topic: f[1], Offset: f[2]})
				}
			}
		default:
			err = fmt.Errorf("not a key Butter's autoscaler knows")
		}
		if err != nil {
			return sp, fmt.Errorf("scaling policy %s: %w", k, err)
		}
	}
	return sp, nil
}

func policyDuration(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("want a duration string, got %T", v)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative", s)
	}
	return d, nil
}

func policyNumber(v any) (float64, error) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case float32:
		f = float64(n)
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("want a number, got %T", v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v is not a finite number", f)
	}
	return f, nil
}

func policyCapacity(v any) (map[string]int, error) {
	out := map[string]int{}
	add := func(k string, x any) error {
		f, err := policyNumber(x)
		if err != nil {
			return fmt.Errorf("function %s: %w", k, err)
		}
		if f < 1 || f != math.Trunc(f) || f > 1e9 {
			return fmt.Errorf("function %s: %v is not a whole number of calls above 0", k, f)
		}
		out[k] = int(f)
		return nil
	}
	switch m := v.(type) {
	case map[string]any:
		for k, x := range m {
			if err := add(k, x); err != nil {
				return nil, err
			}
		}
	case map[string]int:
		for k, x := range m {
			if err := add(k, x); err != nil {
				return nil, err
			}
		}
	case []map[string]any:
		for _, mm := range m {
			for k, x := range mm {
				if err := add(k, x); err != nil {
					return nil, err
				}
			}
		}
	case []any:
		// Nomad gives a block of free-form keys back as a list of maps.
		for _, e := range m {
			mm, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("want a map of function to calls, got a list of %T", e)
			}
			for k, x := range mm {
				if err := add(k, x); err != nil {
					return nil, err
				}
			}
		}
	default:
		return nil, fmt.Errorf("want a map of function to calls, got %T", v)
	}
	return out, nil
}

func policyStrings(v any) ([]string, error) {
	var out []string
	switch l := v.(type) {
	case []string:
		out = append(out, l...)
	case []any:
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got an element of %T", e)
			}
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("want a list of strings, got %T", v)
	}
	sort.Strings(out)
	return out, nil
}
