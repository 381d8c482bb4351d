package main

import (
	"strings"
	"testing"
)

func TestSameCommit(t *testing.T) {
	for _, tc := range []struct {
		ran, head string
		want      string // a part of the error, or "" for none
	}{
		{ran: "51c2b62", head: "51c2b62"},
		{ran: "51c2b62", head: "51c2b62a"}, // git abbreviates to more digits as the repository grows
		{ran: "", head: "51c2b62", want: "names no commit"},
		{ran: "51c2b62 (with uncommitted changes)", head: "51c2b62", want: "uncommitted changes"},
		{ran: "5386fb2", head: "51c2b62", want: "at commit 5386fb2, but the checkout is at 51c2b62"},
	} {
		err := sameCommit("bench/raw/bench.txt", tc.ran, tc.head)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("sameCommit(%q, %q) = %v, want nil", tc.ran, tc.head, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("sameCommit(%q, %q) = %v, want an error containing %q", tc.ran, tc.head, err, tc.want)
		}
	}
}
