// Package postgres is Butter's PostgreSQL sink: it writes a stream's JSON
// records as rows of a table through pgx, a batch of records in one
// statement, PostgreSQL itself converting each JSON field to its column's
// type (jsonb_populate_recordset). With an id column (the event's id,
// under a unique index) a record written twice is written once, so the
// at-least-once delivery of streams gives each record one row; with upsert
// columns a record replaces the row with the same values in them.
//
// A record PostgreSQL refuses (a data exception, SQLSTATE class 22, or a
// constraint violation, class 23) fails alone as refused; anything else
// (the server down, a restart) fails the attempt, to be retried.
//
// With tls_ca (and tls_cert and the key in the secret tls_key,
// connectors/tlsconf), the connection is TLS, never plain: the server's
// certificate is checked against those CAs and the DSN's host name, as
// sslmode=verify-full does, with no fallback to a plain connection
// (which sslmode=prefer, the default, would otherwise allow).
//
// Neighbours: hcl/spec decodes sink "postgres" (connector.go);
// plugins/runtime runs it (sink.go); plugins/pool polls a source
// (sources.go).
package postgres

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/butterfn/butter/connectors/tlsconf"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Option names in a sink's options (hcl/spec/connector.go writes them).
const (
	OptDSN      = "dsn"
	OptPassword = "password" // the name of the secret holding it
	OptTable    = "table"
	OptIDColumn = "id_column"
	OptUpsert   = "upsert" // comma-separated conflict columns
	// OptColumn prefixes a column's name; its value is the record's field
	// (a dotted path) that fills it.
	OptColumn = "column."
)

// Config is a sink's settings.
type Config struct {
	DSN      string
	Password string
	Table    string
	// Columns maps a column to the record's field that fills it; empty
	// fills the columns named like the record's fields.
	Columns  map[string]string
	IDColumn string
	Upsert   []string
	// TLS is the connection's TLS configuration from the tls_* options
	// (WithTLS); nil: as the DSN's sslmode says.
	TLS *tls.Config
}

// ConfigFrom reads a sink's settings from its options, the password from
// env under the secret's name.
func ConfigFrom(opts, env map[string]string) (Config, error) {
	c := Config{DSN: opts[OptDSN], Table: opts[OptTable], IDColumn: opts[OptIDColumn], Columns: map[string]string{}}
	if c.DSN == "" || c.Table == "" {
		return c, errors.New("postgres: a sink needs a dsn and a table")
	}
	if name := opts[OptPassword]; name != "" {
		v, ok := env[name]
		if !ok {
			return c, fmt.Errorf("postgres: the password's secret %s has no value", name)
		}
		c.Password = v
	}
	tc, err := tlsconf.FromOptions(opts, env)
	if err != nil {
		return c, fmt.Errorf("postgres: %w", err)
	}
	c.TLS = tc
	if u := opts[OptUpsert]; u != "" {
		c.Upsert = strings.Split(u, ",")
	}
	for k, v := range opts {
		if col, ok := strings.CutPrefix(k, OptColumn); ok {
			c.Columns[col] = v
		}
	}
	return c, nil
}

// Record is one record to write: its event id and JSON value.
type Record struct {
	ID    string
	Value []byte
}

// RefusedError is a record PostgreSQL refused: retrying it will not help.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Sink writes records to a table.
type Sink struct {
	cfg  Config
	pool *pgxpool.Pool
	sql  string
}

// NewSink makes a sink; it connects on first use (a server that is down
// fails each write until it is up).
func NewSink(cfg Config) (*Sink, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %w", err)
	}
	if cfg.Password != "" {
		pc.ConnConfig.Password = cfg.Password
	}
	if err := WithTLS(&pc.ConnConfig.Config, cfg.TLS); err != nil {
		return nil, err
	}
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Sink{cfg: cfg, pool: pool, sql: insertSQL(cfg)}, nil
}

// WithTLS makes the connections of cc use tc (when not nil) and TLS
// only: each host's, with the host as the name its certificate must
// carry (sslmode=verify-full), and no plain fallback. A DSN whose
// sslmode is disable (no TLS at all) is refused.
func WithTLS(cc *pgconn.Config, tc *tls.Config) error {
	if tc == nil {
		return nil
	}
	if cc.TLSConfig == nil {
		return errors.New("postgres: the DSN says sslmode=disable, and the TLS settings (tls_ca, tls_cert, tls_key) ask for TLS: drop sslmode=disable or the TLS settings")
	}
	forHost := func(host string) *tls.Config {
		c := tc.Clone()
		if c.ServerName == "" {
			c.ServerName = host
		}
		return c
	}
	cc.TLSConfig = forHost(cc.Host)
	fbs := cc.Fallbacks[:0]
	for _, fb := range cc.Fallbacks {
		if fb.TLSConfig == nil {
			continue // a plain connection: never, with TLS settings
		}
		fb.TLSConfig = forHost(fb.Host)
		fbs = append(fbs, fb)
	}
	cc.Fallbacks = fbs
	return nil
}

// insertSQL is the statement that writes a batch: $1 is a JSON array of
// objects keyed by column.
func insertSQL(c Config) string {
	table := pgx.Identifier(strings.Split(c.Table, ".")).Sanitize()
	cols := make([]string, 0, len(c.Columns)+1)
	for col := range c.Columns {
		cols = append(cols, col)
	}
	if c.IDColumn != "" {
		cols = append(cols, c.IDColumn)
	}
	sort.Strings(cols)
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = pgx.Identifier{col}.Sanitize()
	}
	var b strings.Builder
	if len(c.Columns) == 0 {
		// The record's fields name the columns: every column of the table
		// the records have (others keep their defaults).
		fmt.Fprintf(&b, "INSERT INTO %s SELECT * FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)", table, table)
	} else {
		list := strings.Join(quoted, ", ")
		fmt.Fprintf(&b, "INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)", table, list, list, table)
	}
	switch {
	case len(c.Upsert) > 0:
		keys := make([]string, len(c.Upsert))
		for i, k := range c.Upsert {
			keys[i] = pgx.Identifier{k}.Sanitize()
		}
		var sets []string
		for i, col := range cols {
			if !contains(c.Upsert, col) {
				sets = append(sets, quoted[i]+" = EXCLUDED."+quoted[i])
			}
		}
		if len(sets) == 0 {
			fmt.Fprintf(&b, " ON CONFLICT (%s) DO NOTHING", strings.Join(keys, ", "))
		} else {
			fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET %s", strings.Join(keys, ", "), strings.Join(sets, ", "))
		}
	case c.IDColumn != "":
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO NOTHING", pgx.Identifier{c.IDColumn}.Sanitize())
	}
	return b.String()
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// row turns a record into the object jsonb_populate_recordset reads:
// keyed by column, with the id column set.
func (s *Sink) row(r Record) (map[string]any, error) {
	var v any
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return nil, &RefusedError{fmt.Errorf("the record is not JSON: %w", err)}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &RefusedError{errors.New("the record is not a JSON object")}
	}
	out := map[string]any{}
	if len(s.cfg.Columns) == 0 {
		out = obj
	}
	for col, field := range s.cfg.Columns {
		out[col] = lookup(obj, field)
	}
	if s.cfg.IDColumn != "" {
		out[s.cfg.IDColumn] = r.ID
	}
	return out, nil
}

// lookup follows a dotted path into obj; nil when a step is missing.
func lookup(obj map[string]any, path string) any {
	var cur any = obj
	for _, step := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[step]
	}
	return cur
}

// Write writes records in one statement. When PostgreSQL refuses it for
// one of them, it writes them one at a time, to say which: it returns how
// many were written (the first n, in order) and the error of the record
// after them (a *RefusedError when refused, else a failure to retry).
func (s *Sink) Write(ctx context.Context, recs []Record) (int, error) {
	rows := make([]map[string]any, 0, len(recs))
	for i, r := range recs {
		row, err := s.row(r)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			return s.oneByOne(ctx, recs)
		}
		rows = append(rows, row)
	}
	b, _ := json.Marshal(rows)
	_, err := s.pool.Exec(ctx, s.sql, string(b))
	if err == nil {
		return len(recs), nil
	}
	if !refused(err) || len(recs) == 1 {
		return 0, classify(err)
	}
	return s.oneByOne(ctx, recs)
}

func (s *Sink) oneByOne(ctx context.Context, recs []Record) (int, error) {
	for i, r := range recs {
		if _, err := s.Write(ctx, []Record{r}); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

// refused says PostgreSQL refused the data: SQLSTATE class 22 (data
// exception) or 23 (integrity constraint violation).
func refused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		err = fmt.Errorf("%s (SQLSTATE %s)", pe.Message, pe.Code)
		if pe.Detail != "" {
			err = fmt.Errorf("%w: %s", err, pe.Detail)
		}
		if refused(pe) {
			return &RefusedError{err}
		}
	}
	return fmt.Errorf("postgres: %w", err)
}

// Close closes the connections.
func (s *Sink) Close() { s.pool.Close() }

// Source options (hcl/spec/connector.go writes them).
const (
	OptQuery    = "query"  // selects the rows after $1, the cursor, in its order
	OptCursor   = "cursor" // the column whose value orders the rows and is kept
	OptKey      = "key"    // the column keying records (optional)
	OptInterval = "interval"
	OptLock     = "lock" // the advisory lock's key (a source's name)
)

// Row is a row a source read: its columns as a JSON object, its cursor
// value (as text) and its key.
type Row struct {
	Value  []byte
	Cursor string
	Key    string
}

// SourceConfig is a polling source's settings.
type SourceConfig struct {
	DSN, Password string
	TLS           *tls.Config // as Config's
	Query, Cursor string
	Key           string
	Interval      time.Duration
	Lock          string
}

// Poller reads new rows of a query, in order of its cursor column, from
// the last cursor on. Only one poller per lock polls at a time, across
// processes: it holds a PostgreSQL advisory lock on its session.
type Poller struct {
	cfg  SourceConfig
	conn *pgx.Conn
}

// NewPoller connects (to poll), or fails.
func NewPoller(ctx context.Context, cfg SourceConfig) (*Poller, error) {
	cc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %w", err)
	}
	if cfg.Password != "" {
		cc.Password = cfg.Password
	}
	if err := WithTLS(&cc.Config, cfg.TLS); err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Poller{cfg: cfg, conn: c}, nil
}

// Lock tries to take the source's advisory lock for this session; it
// reports whether this poller holds it.
func (p *Poller) Lock(ctx context.Context) (bool, error) {
	var ok bool
	err := p.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", "butter-source:"+p.cfg.Lock).Scan(&ok)
	return ok, err
}

// Poll returns the rows after cursor ("" for the start: the query gets
// NULL), in order.
func (p *Poller) Poll(ctx context.Context, cursor string) ([]Row, error) {
	var arg any
	if cursor != "" {
		arg = cursor
	}
	rows, err := p.conn.Query(ctx, p.cfg.Query, arg)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	var out []Row
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, classify(err)
		}
		obj := make(map[string]any, len(vals))
		r := Row{}
		for i, f := range fields {
			obj[f.Name] = vals[i]
			if f.Name == p.cfg.Cursor {
				r.Cursor = fmt.Sprint(vals[i])
			}
			if f.Name == p.cfg.Key && vals[i] != nil {
				r.Key = fmt.Sprint(vals[i])
			}
		}
		if r.Cursor == "" {
			return nil, fmt.Errorf("postgres: the query returns no column %q (the cursor), or it is NULL", p.cfg.Cursor)
		}
		if r.Value, err = json.Marshal(obj); err != nil {
			return nil, fmt.Errorf("postgres: row as JSON: %w", err)
		}
		out = append(out, r)
	}
	return out, classify(rows.Err())
}

// Close closes the connection (and so releases the lock).
func (p *Poller) Close() { _ = p.conn.Close(context.Background()) }
