// Package pgtest runs a real PostgreSQL 15 server (Debian's
// postgresql-15, which `make test-deps` installs) on 127.0.0.1 for tests:
// a cluster of its own in a temporary directory, owned by the postgres
// user when the test runs as root (initdb refuses root), stopped when the
// test ends.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/internal/testport"
	"github.com/butterfn/butter/internal/testproc"
	"github.com/jackc/pgx/v5"
)

// Bin is where Debian's PostgreSQL 15 programs are.
const Bin = "/usr/lib/postgresql/15/bin"

// Server is a running PostgreSQL.
type Server struct {
	*testproc.Proc
	Port int
	// DSN connects to database "butter" as user "butter" (trust auth
	// on 127.0.0.1).
	DSN string
	// DSNWithoutPassword is DSN without the password, after
	// RequirePassword.
	DSNWithoutPassword string

	t     testing.TB
	dir   string
	admin string              // the superuser's DSN
	hba   string              // pg_hba.conf
	cred  *syscall.Credential // the cluster's owner, when the test runs as root
}

// Start initialises and starts a server with a database and user named
// butter.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(Bin, "postgres")); err != nil {
		t.Fatalf("PostgreSQL 15 is needed (apt-get install postgresql-15; make test-deps does): %v", err)
	}
	// Not t.TempDir: its parent is private to root, and the server runs
	// as the postgres user.
	dir, err := os.MkdirTemp("", "butter-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{t: t, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.run(filepath.Join(Bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.Port = testport.Port(t)
	s.DSN = fmt.Sprintf("postgres://butter@127.0.0.1:%d/butter?sslmode=disable", s.Port)
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	s.Proc = testproc.Start(t, "postgres", func() *exec.Cmd {
		return s.run(filepath.Join(Bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.Port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir, "-c", "fsync=off")
	}, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err == nil {
			_ = c.Close(ctx)
		}
		return err
	})
	s.Exec(admin, "CREATE USER butter", "CREATE DATABASE butter OWNER butter")
	s.admin, s.hba = admin, filepath.Join(data, "pg_hba.conf")
	return s
}

// RequirePassword gives user butter a password and makes the server
// require it (SCRAM-SHA-256) for butter's connections over TCP, as a
// production server would; DSN then carries the password, and
// DSNWithoutPassword is the same URL without it.
func (s *Server) RequirePassword(password string) {
	s.t.Helper()
	s.Exec(s.admin, fmt.Sprintf("SET password_encryption = 'scram-sha-256'; ALTER USER butter PASSWORD '%s'", password))
	hba, err := os.ReadFile(s.hba)
	if err != nil {
		s.t.Fatal(err)
	}
	// The first matching line wins: butter's before the trust lines.
	if err := os.WriteFile(s.hba, append([]byte("host all butter 127.0.0.1/32 scram-sha-256\n"), hba...), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.Exec(s.admin, "SELECT pg_reload_conf()")
	s.DSNWithoutPassword = s.DSN
	s.DSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/butter?sslmode=disable", url.UserPassword("butter", password), s.Port)
}

// RequireTLS turns TLS on with the server certificate cert and its key
// (PEM) and refuses user butter's connections that are not TLS
// (hostnossl ... reject), as a server reached over a network would; DSN
// then asks for TLS (sslmode=require, not verified: the test's own
// queries).
func (s *Server) RequireTLS(cert, key []byte) {
	s.t.Helper()
	certFile, keyFile := filepath.Join(s.dir, "server.crt"), filepath.Join(s.dir, "server.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, cert}, {keyFile, key}} {
		// PostgreSQL refuses a key readable by others, or not its own.
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			s.t.Fatal(err)
		}
		if s.cred != nil {
			if err := os.Chown(f.path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				s.t.Fatal(err)
			}
		}
	}
	hba, err := os.ReadFile(s.hba)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.hba, append([]byte("hostnossl all butter 127.0.0.1/32 reject\n"), hba...), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.Exec(s.admin,
		fmt.Sprintf("ALTER SYSTEM SET ssl_cert_file = '%s'", certFile),
		fmt.Sprintf("ALTER SYSTEM SET ssl_key_file = '%s'", keyFile),
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()")
	s.DSN = fmt.Sprintf("postgres://butter@127.0.0.1:%d/butter?sslmode=require", s.Port)
}

func (s *Server) run(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Exec runs statements on dsn, failing the test on an error.
func (s *Server) Exec(dsn string, stmts ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			s.t.Fatalf("%s: %v", q, err)
		}
	}
}

// Query returns the rows of q on the butter database, each as its
// columns' text.
func (s *Server) Query(q string) [][]string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, q)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			s.t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}
