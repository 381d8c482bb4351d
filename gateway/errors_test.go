package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/butterfn/butter/gateway"
)

// TestPoolErrorsStayShort: a pool's error reaches the client as the
// gateway's error document with one line of its message, bounded, and
// the request id. The pool here is a stand-in (an httptest handler) for
// an older pool or another server on a pool's address that answers with
// a whole traceback; a Butter pool sends one line already
// (plugins/pool TestErrorAnswers). The real pool's exec failure keeps
// the last line of its stderr.
func TestPoolErrorsStayShort(t *testing.T) {
	traceback := "boom\nTraceback (most recent call last):\n  File \"/srv/app/main.py\", line 3, in handle\nValueError: boom"
	old := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"type":"Exception","message":` + strings.ReplaceAll(`"`+strings.ReplaceAll(traceback, `"`, `\"`)+`"`, "\n", `\n`) + `}}`))
	}))
	long := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(strings.Repeat("x", 4000) + "\nsecond line"))
	}))
	b := startPool(t, standardFns()...)
	res := gateway.NewStaticResolver()
	res.Set("test", "default", b.addr)
	res.Set("test", "old", old)
	res.Set("test", "long", long)
	_, url := startGateway(t, res, []gateway.Route{
		{Method: "POST", Path: "/old", Project: "test", Function: "f", Pool: "old"},
		{Method: "POST", Path: "/long", Project: "test", Function: "f", Pool: "long"},
		{Method: "POST", Path: "/fail", Project: "test", Function: "fail"},
	})
	a := post(t, url+"/old", "x", map[string]string{"X-Request-Id": "req-old"})
	if a.code != 500 || a.err.Type != "Exception" || a.err.Error != "boom" || a.err.RequestID != "req-old" {
		t.Errorf("a pool's traceback: %d %s; want 500 Exception, the message's first line and the request id", a.code, a.body)
	}
	a = post(t, url+"/long", "x", nil)
	if a.code != 502 || len(a.err.Error) > 520 || strings.Contains(a.err.Error, "second line") || a.err.RequestID == "" {
		t.Errorf("a long answer: %d, %d bytes of message %.80q...; want 502 and one bounded line", a.code, len(a.err.Error), a.err.Error)
	}
	a = post(t, url+"/fail", "x", nil)
	if a.code != 500 || a.err.Error != "sh exited with exit status 3: broken" || a.err.RequestID == "" {
		t.Errorf("an exec function's failure: %d %s", a.code, a.body)
	}
}
