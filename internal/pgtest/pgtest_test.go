package pgtest_test

import (
	"testing"

	"github.com/butterfn/butter/internal/pgtest"
)

func TestStarts(t *testing.T) {
	s := pgtest.Start(t)
	s.Exec(s.DSN, "CREATE TABLE t (a int)", "INSERT INTO t VALUES (1)")
	s.Restart()
	if rows := s.Query("SELECT a FROM t"); len(rows) != 1 || rows[0][0] != "1" {
		t.Fatalf("rows %v", rows)
	}
}
