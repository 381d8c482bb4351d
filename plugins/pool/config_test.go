package pool

import "testing"

func TestConfigStateChecked(t *testing.T) {
	for _, st := range []StateConfig{{Key: ""}, {Key: "k", TTL: "30 days"}, {Key: "k", TTL: "-1h"}} {
		c := &Config{Functions: []FunctionConfig{{Name: "f", Timeout: "1s", MaxInstances: 1, State: &st}}}
		if err := c.Check(); err == nil {
			t.Errorf("state %+v passed the check", st)
		}
	}
}
