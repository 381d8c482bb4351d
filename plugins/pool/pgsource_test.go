package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/internal/pgtest"
	"github.com/butterfn/butter/plugins/pool"
)

// TestPostgresSource runs a `source "postgres"` in pools against a real
// PostgreSQL 15 and the embedded broker: new rows of its query reach the
// stream as JSON objects, in cursor order, keyed by a column, with ids
// from the cursor; a pool started again goes on from its stored cursor
// (no row twice); with two pools running the source, one holds its
// advisory lock and polls, and no row is produced twice.
func TestPostgresSource(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(pg.DSN, `CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL)`)
	insert := func(from, to int) {
		t.Helper()
		pg.Exec(pg.DSN, fmt.Sprintf(`INSERT INTO orders (customer, total) SELECT 'c' || (g %% 3), g * 1.5 FROM generate_series(%d, %d) g`, from, to-1))
	}
	dev, cl := devBroker(t)
	topics(t, cl, broker.Topic{Name: "ps.orders", Partitions: 1})
	source := pool.FunctionConfig{
		Name: "orders-in", Runtime: "source.postgres", Timeout: "5s", MaxInstances: 1, Concurrency: 1, Bundle: t.TempDir(),
		Output: "ps.orders",
		Options: map[string]string{"dsn": pg.DSN, "cursor": "id", "key": "customer", "interval": "100ms",
			"query": "SELECT id, customer, total FROM orders WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT 20"},
	}
	startPool := func() *pool.Pool {
		t.Helper()
		p, _ := start(t, []pool.FunctionConfig{source})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.StartStreams(ctx, dev.Config()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	insert(0, 50)
	p1 := startPool()
	recs := readAll(t, dev.Addr, "ps.orders", 50)
	for i, r := range recs {
		var row struct {
			ID       int64  `json:"id"`
			Customer string `json:"customer"`
		}
		if err := json.Unmarshal(r.Value, &row); err != nil || row.ID != int64(i+1) || string(r.Key) != row.Customer ||
			broker.Header(r, broker.HeaderID) != fmt.Sprintf("orders-in/%d", i+1) || broker.Header(r, "ce_type") != "butter.postgres.row" {
			t.Fatalf("record %d: %s (key %q, id %q, type %q): %v", i, r.Value, r.Key, broker.Header(r, broker.HeaderID), broker.Header(r, "ce_type"), err)
		}
	}
	// Started again, it goes on from its cursor.
	p1.Close()
	insert(50, 60)
	startPool()
	// And a second pool beside it: one of them polls.
	startPool()
	insert(60, 70)
	recs = readAll(t, dev.Addr, "ps.orders", 70)
	seen := map[string]int{}
	for _, r := range recs {
		seen[broker.Header(r, broker.HeaderID)]++
	}
	for i := 1; i <= 70; i++ {
		if id := fmt.Sprintf("orders-in/%d", i); seen[id] != 1 {
			t.Errorf("row %d produced %d times", i, seen[id])
		}
	}
}
