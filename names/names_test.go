package names

import "testing"

func TestRule(t *testing.T) {
	for _, ok := range []string{"a", "iot", "a-b_c9", "x23456789012345678901234567890123456789012345678901234567890123"} {
		if !Valid(ok) {
			t.Errorf("Valid(%q) = false, want true", ok)
		}
	}
	for _, bad := range []string{"", "A", "9a", "-a", "a.b", "a b", "x234567890123456789012345678901234567890123456789012345678901234"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true, want false", bad)
		}
	}
}

// TestNoCollisions checks the property the name shapes exist for: a tick
// topic, a request topic and a stream's topic of one project never
// coincide, nor do their consumer groups, whatever the (valid) names.
func TestNoCollisions(t *testing.T) {
	words := []string{"a", "timers", "requests", "_timers", "r"}
	topics := map[string]string{}
	groups := map[string]string{}
	add := func(m map[string]string, name, what string) {
		if prev, ok := m[name]; ok && prev != what {
			t.Errorf("%q is both %s and %s", name, prev, what)
		}
		m[name] = what
	}
	for _, x := range words {
		for _, y := range words {
			if !Valid(x) || !Valid(y) {
				continue
			}
			add(topics, Topic("p", x), "stream "+x)
			add(topics, TimerTopic("p", x), "ticks of "+x)
			add(topics, RequestTopic("p", x), "requests of "+x)
			add(groups, ConsumerGroup("p", x, y), "group of "+x+" on "+y)
			add(groups, TimerGroup("p", x), "tick group of "+x)
			add(groups, RequestGroup("p", x), "request group of "+x)
		}
	}
	if len(topics) == 0 || len(groups) == 0 {
		t.Fatal("no names generated")
	}
}
