package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/butterfn/butter/broker"
)

// TestBrokerSASLUsers checks how `butter broker -dev` reads its SASL
// users from -sasl-users-file and -sasl-user, and that each mistake names
// the file and line or the flag.
func TestBrokerSASLUsers(t *testing.T) {
	dir := t.TempDir()
	n := 0
	file := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("users%d", n))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	users, err := saslUsers(file("# users\nplain alice a-pw\n\nSCRAM-SHA-512 bob b-pw\n"), []string{"scram-sha-256:carol"}, "c-pw")
	if err != nil {
		t.Fatal(err)
	}
	want := []broker.SASLUser{
		{Mechanism: "PLAIN", User: "alice", Password: "a-pw"},
		{Mechanism: "SCRAM-SHA-512", User: "bob", Password: "b-pw"},
		{Mechanism: "SCRAM-SHA-256", User: "carol", Password: "c-pw"},
	}
	if !reflect.DeepEqual(users, want) {
		t.Errorf("users %+v, want %+v", users, want)
	}
	if users, err := saslUsers("", nil, ""); err != nil || users != nil {
		t.Errorf("no SASL: %v %v", users, err)
	}
	for _, c := range []struct {
		file  string
		flags []string
		pw    string
		want  string
	}{
		{file("PLAIN alice\n"), nil, "", ":1: want \"MECHANISM USERNAME PASSWORD\", got 2 fields"},
		{file("PLAIN a b\nGSSAPI x y\n"), nil, "", `:2: mechanism "GSSAPI" is not PLAIN`},
		{file("# nobody\n"), nil, "", "holds no user"},
		{filepath.Join(dir, "missing"), nil, "", "-sasl-users-file: open"},
		{"", []string{"alice"}, "pw", `-sasl-user "alice": want MECHANISM:USERNAME`},
		{"", []string{"md5:alice"}, "pw", `-sasl-user "md5:alice"`},
		{"", []string{"PLAIN:alice"}, "", "$BUTTER_BROKER_SASL_PASSWORD is empty"},
	} {
		if _, err := saslUsers(c.file, c.flags, c.pw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("saslUsers(%s, %v): %v, want %q", c.file, c.flags, err, c.want)
		}
	}
}
