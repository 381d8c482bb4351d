package spec

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Scaling policies live on pools, not functions. A pool is one Nomad task
// group, and a task group's count (its allocations) is what Nomad scales:
// every function of a pool gets a new allocation together, so a policy per
// function would give one group several bounds to reconcile. The
// per-function level is the instances block, inside one allocation; the
// pool block's scaling block is the allocation level (docs/autoscaling.md).
//
//	pool "default" {
//	  scaling {
//	    min            = 1      # 0 allows scale to zero
//	    max            = 10
//	    enabled        = true
//	    cooldown       = "30s"  # no second step sooner than this
//	    scale_in_delay = "5m"   # load below target this long before scaling in
//	    target = {
//	      inflight = 0.7        # in-flight calls / capacity, per function
//	      lag      = 1000       # consumer lag (records) per allocation
//	      cpu      = 0.8        # CPU used / CPU reserved (no default)
//	      memory   = 0.8        # memory used / memory reserved (no default)
//	    }
//	  }
//	}

// The signals a scaling target may name.
const (
	// SignalInFlight is the fraction of a function's capacity (instances
	// max × concurrency, per allocation) that calls in flight may use.
	SignalInFlight = "inflight"
	// SignalLag is the consumer lag, in records, one allocation may carry
	// across the pool's consumer groups (stream triggers, tick topics,
	// request topics of queued and async routes).
	SignalLag = "lag"
	// SignalCPU and SignalMemory are the fractions of one allocation's
	// reserved CPU and memory (the task's resources) its pool may use,
	// as Nomad's allocation stats measure them. No default: a pool
	// without these targets is not read for them.
	SignalCPU    = "cpu"
	SignalMemory = "memory"
)

// Signals are the signal names a target block takes.
var Signals = []string{SignalInFlight, SignalLag, SignalCPU, SignalMemory}

// Defaults of a pool's scaling block: chosen so that the examples need no
// tuning (docs/autoscaling.md).
const (
	DefaultScalingMin     = 1
	DefaultScalingMax     = 10
	DefaultCooldown       = 30 * time.Second
	DefaultScaleInDelay   = 5 * time.Minute
	DefaultTargetInFlight = 0.7
	DefaultTargetLag      = 1000
)

// Pool is a pool: the Nomad task group that hosts the functions whose pool
// argument names it. A pool needs no block; a pool block sets its scaling.
type Pool struct {
	Name    string
	Scaling Scaling
	// DeclRange is where the pool block is written; zero when the pool
	// has none.
	DeclRange hcl.Range
}

// Scaling is a pool's scaling policy: the bounds of its allocation count
// and the targets the autoscaler holds it to.
type Scaling struct {
	// Enabled lets the autoscaler change the count; false leaves it to
	// operators (`nomad job scale`).
	Enabled bool
	// Min and Max bound the count; Min may be 0 (scale to zero).
	Min, Max int
	// Cooldown is the least time between two scaling steps of the pool.
	Cooldown time.Duration
	// ScaleInDelay is how long the load must stay below target before the
	// count goes down.
	ScaleInDelay time.Duration
	// Targets maps each signal (Signals) to its target value.
	Targets map[string]float64

	// DeclRange is where the scaling block is written; zero when the
	// pool has none.
	DeclRange hcl.Range
}

// DefaultScaling returns the scaling policy of a pool with no scaling
// block.
func DefaultScaling() Scaling {
	return Scaling{
		Enabled:      true,
		Min:          DefaultScalingMin,
		Max:          DefaultScalingMax,
		Cooldown:     DefaultCooldown,
		ScaleInDelay: DefaultScaleInDelay,
		Targets:      map[string]float64{SignalInFlight: DefaultTargetInFlight, SignalLag: DefaultTargetLag},
	}
}

// PoolOf returns the settings of the named pool: its block's, or the
// defaults when it has none (or when p was not built by Load).
func (p *Project) PoolOf(name string) *Pool {
	if pl := p.Pools[name]; pl != nil {
		return pl
	}
	return &Pool{Name: name, Scaling: DefaultScaling()}
}

var poolSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "scaling"}},
}

var scalingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "enabled"}, {Name: "min"}, {Name: "max"},
		{Name: "cooldown"}, {Name: "scale_in_delay"}, {Name: "target"},
	},
}

// decodePool decodes a pool block's body.
func (d *decoder) decodePool(p pending) {
	pl := d.pools[p.block.Labels[0]]
	pl.Scaling = DefaultScaling()
	content, diags := p.block.Body.Content(poolSchema)
	d.diags = append(d.diags, diags...)
	var first *hcl.Block
	for _, b := range content.Blocks {
		if first != nil {
			r := b.DefRange
			d.errorf(&r, "Duplicate scaling block", "A pool takes one scaling block, and pool %q has another at %s. Merge the two.", pl.Name, at(first.DefRange))
			continue
		}
		first = b
		pl.Scaling = d.decodeScaling(pl.Name, b)
	}
}

// decodeScaling decodes a scaling block; arguments left out keep
// DefaultScaling's values.
func (d *decoder) decodeScaling(pool string, b *hcl.Block) Scaling {
	s := DefaultScaling()
	s.DeclRange = b.DefRange
	content, diags := b.Body.Content(scalingSchema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	if x := a["enabled"]; x != nil {
		if v, ok := d.boolean(x); ok {
			s.Enabled = v
		}
	}
	minOK, maxOK := true, true
	if x := a["min"]; x != nil {
		s.Min, minOK = d.count(x, 0, "0 (scale to zero) or more")
	}
	if x := a["max"]; x != nil {
		s.Max, maxOK = d.count(x, 1, "1 or more")
	}
	if minOK && maxOK && s.Min > s.Max {
		x := a["min"]
		if x == nil {
			x = a["max"]
		}
		r := x.Expr.Range()
		d.errorf(&r, "Scaling bounds inverted",
			"Pool %q may run from min (%d%s) to max (%d%s) allocations, and min is the greater. Lower min or raise max.",
			pool, s.Min, defaultNote(a["min"]), s.Max, defaultNote(a["max"]))
	}
	for _, name := range []string{"cooldown", "scale_in_delay"} {
		x := a[name]
		if x == nil {
			continue
		}
		v, ok := d.duration(x)
		if !ok {
			continue
		}
		if v < 0 {
			r := x.Expr.Range()
			d.errorf(&r, "Invalid "+name, "%s cannot be negative; use \"0s\" for none.", name)
			continue
		}
		if name == "cooldown" {
			s.Cooldown = v
		} else {
			s.ScaleInDelay = v
		}
	}
	if x := a["target"]; x != nil {
		d.decodeTargets(&s, x)
	}
	return s
}

// count decodes a whole number of allocations, at least lo.
func (d *decoder) count(x *hcl.Attribute, lo int, want string) (int, bool) {
	v, ok := d.value(x, cty.Number, "a whole number of allocations")
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	r := x.Expr.Range()
	if !bf.IsInt() || acc != big.Exact || n < int64(lo) || n > 100000 {
		d.errorf(&r, "Invalid value for "+x.Name, "%s counts allocations: a whole number, %s (at most 100000); it is %s.", x.Name, want, bf.Text('g', 10))
		return 0, false
	}
	return int(n), true
}

// decodeTargets reads target = { signal = value, ... }, naming an unknown
// signal or a bad value at its own position.
func (d *decoder) decodeTargets(s *Scaling, attr *hcl.Attribute) {
	pairs, diags := hcl.ExprMap(attr.Expr)
	if diags.HasErrors() {
		r := attr.Expr.Range()
		d.errorf(&r, "Invalid value for target", "target is a map from signal to target value, like target = { inflight = 0.7, lag = 1000 }. The signals are %s.", strings.Join(Signals, ", "))
		return
	}
	seen := map[string]hcl.Range{}
	for _, kv := range pairs {
		kr := kv.Key.Range()
		key, kd := kv.Key.Value(nil)
		var name string
		if !kd.HasErrors() && key.Type() == cty.String && key.IsKnown() && !key.IsNull() {
			name = key.AsString()
		} else {
			d.errorf(&kr, "Invalid target", "A target's key names a signal, like inflight or lag; the signals are %s.", strings.Join(Signals, ", "))
			continue
		}
		if prev, dup := seen[name]; dup {
			d.errorf(&kr, "Duplicate target", "Signal %q already has a target at %s.", name, at(prev))
			continue
		}
		seen[name] = kr
		known := false
		for _, sig := range Signals {
			known = known || sig == name
		}
		if !known {
			detail := fmt.Sprintf("%q is not a signal the autoscaler reads. The signals are %s.", name, strings.Join(Signals, ", "))
			if sg := suggest(name, Signals); sg != "" {
				detail = fmt.Sprintf("%q is not a signal the autoscaler reads. Did you mean %q? The signals are %s.", name, sg, strings.Join(Signals, ", "))
			}
			d.errorf(&kr, "Unknown signal", "%s", detail)
			continue
		}
		vr := kv.Value.Range()
		v, vd := d.eval(kv.Value)
		if vd.HasErrors() || v.Type() != cty.Number || !v.IsKnown() || v.IsNull() {
			d.errorf(&vr, "Invalid target", "The target of %s is a number, like %s.", name, targetExample(name))
			continue
		}
		f, _ := v.AsBigFloat().Float64()
		switch {
		case name == SignalInFlight && (f <= 0 || f > 1):
			d.errorf(&vr, "Invalid target", "The inflight target is the fraction of capacity calls in flight may use, above 0 and at most 1, like 0.7; it is %g.", f)
			continue
		case name == SignalLag && f <= 0:
			d.errorf(&vr, "Invalid target", "The lag target is the consumer lag, in records, one allocation may carry: above 0, like 1000; it is %g.", f)
			continue
		case (name == SignalCPU || name == SignalMemory) && (f <= 0 || f > 1):
			d.errorf(&vr, "Invalid target", "The %s target is the fraction of one allocation's reserved %s its pool may use, above 0 and at most 1, like 0.8; it is %g.", name, name, f)
			continue
		}
		s.Targets[name] = f
	}
}

func targetExample(signal string) string {
	switch signal {
	case SignalInFlight:
		return "0.7"
	case SignalCPU, SignalMemory:
		return "0.8"
	}
	return "1000"
}

// resolvePools gives the project every pool its functions use, with its
// block's settings or the defaults, refuses a pool block that no function
// uses. A pool with min = 0 and direct routes is fine: the gateway holds
// its calls while the autoscaler wakes it (docs/autoscaling.md).
func (d *decoder) resolvePools(p *Project) {
	p.Pools = map[string]*Pool{}
	used := map[string][]*Function{}
	for _, f := range p.Functions {
		used[f.Pool] = append(used[f.Pool], f)
	}
	var poolNames []string
	for name := range used {
		poolNames = append(poolNames, name)
	}
	sort.Strings(poolNames)
	for _, name := range poolNames {
		if pl := d.pools[name]; pl != nil {
			p.Pools[name] = pl
		} else {
			p.Pools[name] = &Pool{Name: name, Scaling: DefaultScaling()}
		}
	}
	var declared []string
	for name := range d.pools {
		declared = append(declared, name)
	}
	sort.Strings(declared)
	for _, name := range declared {
		pl := d.pools[name]
		if used[name] == nil {
			r := pl.DeclRange
			detail := fmt.Sprintf("No function runs in pool %q, so its settings would apply to nothing. Functions choose their pool with pool = \"%s\"; without it they run in pool %q.", name, name, DefaultPool)
			if sg := suggest(name, poolNames); sg != "" {
				detail = fmt.Sprintf("No function runs in pool %q. Did you mean pool %q? Functions choose their pool with pool = \"<name>\"; without it they run in pool %q.", name, sg, DefaultPool)
			}
			d.errorf(&r, "Unknown pool", "%s", detail)
			continue
		}
	}
}
