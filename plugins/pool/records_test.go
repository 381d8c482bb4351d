package pool

import (
	"strings"
	"testing"
)

// TestOutputsEnvelope: what the pool takes for several outputs, and what
// it refuses (docs/events.md, "Outputs").
func TestOutputsEnvelope(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string // value@key#index; nil: none
		bad  string   // a PostconditionFailed naming this
	}{
		{in: "", want: nil},
		{in: "plain", want: []string{"plain@#0"}},
		{in: `[1,2]`, want: []string{"[1,2]@#0"}},
		{in: `{"butter.outputsX": 1}`, want: []string{`{"butter.outputsX": 1}@#0`}},
		{in: `{"a": 1, "butter.outputs": []}`, want: []string{`{"a": 1, "butter.outputs": []}@#0`}},
		{in: " \n{ \"butter.outputs\" : [{\"text\": \"a\"}, {\"value\": null}, {\"base64\": \"AAE=\", \"key\": \"k\"}, {\"value\": {\"x\": [1, 2]}}]}",
			want: []string{"a@#0", "\x00\x01@k#2", `{"x":[1,2]}@#3`}},
		{in: `{"butter.outputs": []}`, want: nil},
		{in: `{"butter.outputs": [{"text": "a", "value": 1}]}`, bad: `"/butter.outputs/0"`},
		{in: `{"butter.outputs": [{"texts": "a"}]}`, bad: `"/butter.outputs/0/texts"`},
		{in: `{"butter.outputs": [{"base64": "!"}]}`, bad: "not base64"},
		{in: `{"butter.outputs": [{"text": 1}]}`, bad: "want a string"},
		{in: `{"butter.outputs": {"text": "a"}}`, bad: "want a list"},
		{in: `{"butter.outputs": [], "b": 1}`, bad: "only member"},
		{in: `{"butter.outputs": [`, bad: "not JSON"},
	} {
		outs, se := outputs([]byte(c.in))
		if c.bad != "" {
			if se == nil || !strings.Contains(se.Error(), c.bad) || se.Type != "PostconditionFailed" {
				t.Errorf("%q: %v, want a PostconditionFailed naming %s", c.in, se, c.bad)
			}
			continue
		}
		if se != nil {
			t.Errorf("%q: %v", c.in, se)
			continue
		}
		var got []string
		for _, o := range outs {
			got = append(got, string(o.value)+"@"+string(o.key)+"#"+string(rune('0'+o.index)))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}

// TestCallTrace: an input's valid traceparent is passed on; a missing or
// invalid one gives a valid trace derived from the event id, the same
// every time.
func TestCallTrace(t *testing.T) {
	valid := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if tp, ok := callTrace(valid, "e1"); tp != valid || !ok {
		t.Errorf("valid parent: %s %v", tp, ok)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		tp, ok := callTrace(bad, "e1")
		again, _ := callTrace(bad, "e1")
		other, _ := callTrace(bad, "e2")
		if ok || tp != again || tp == other || len(tp) != 55 || !strings.HasPrefix(tp, "00-") || !isHex(tp[3:35]) || !isHex(tp[36:52]) || tp[52:] != "-01" {
			t.Errorf("parent %q: %s (again %s, other id %s)", bad, tp, again, other)
		}
	}
}
