package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

func TestDialectPlaceholders(t *testing.T) {
	q := `SELECT a FROM t WHERE b = ? AND c = '?' AND "d?" = ? AND e = 'it''s?'`
	if got := store.SQLite.Q(q); got != q {
		t.Errorf("SQLite rewrote %q to %q", q, got)
	}
	want := `SELECT a FROM t WHERE b = $1 AND c = '?' AND "d?" = $2 AND e = 'it''s?'`
	if got := store.Postgres.Q(q); got != want {
		t.Errorf("Postgres.Q = %q, want %q", got, want)
	}
}

// TestSQLBothDialects runs one component's statements, written once, on both databases: a schema with the
// dialect's type words, "?" placeholders, a 64-bit value, a numbered key, bytes, and a transaction that
// rolls back on an error.
func TestSQLBothDialects(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.SQL{
		"sqlite":   func(t *testing.T) store.SQL { return storetest.SQLite(t).SQL() },
		"postgres": func(t *testing.T) store.SQL { return storetest.Postgres(t).SQL() },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := open(t)
			migrations := []string{`CREATE TABLE sqltest (
				id {serial} PRIMARY KEY,
				big {int64} NOT NULL,
				note TEXT NOT NULL DEFAULT '?',
				data {blob}
			)`}
			if err := db.Migrate(ctx, "sqltest", migrations); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, "sqltest", migrations); err != nil {
				t.Fatalf("re-running migrations: %v", err)
			}
			const big = int64(1) << 40 // wider than PostgreSQL's INTEGER
			var id int64
			if err := db.QueryRowContext(ctx, `INSERT INTO sqltest (big, data) VALUES (?, ?) RETURNING id`,
				big, []byte{0, 1, 2}).Scan(&id); err != nil {
				t.Fatal(err)
			}
			var gotBig int64
			var note string
			var data []byte
			if err := db.QueryRowContext(ctx, `SELECT big, note, data FROM sqltest WHERE id = ? AND note = '?'`, id).
				Scan(&gotBig, &note, &data); err != nil {
				t.Fatal(err)
			}
			if gotBig != big || note != "?" || string(data) != "\x00\x01\x02" {
				t.Errorf("read back big=%d note=%q data=%x", gotBig, note, data)
			}
			boom := errors.New("boom")
			err := db.InTx(ctx, func(tx store.Tx) error {
				if _, err := tx.ExecContext(ctx, `DELETE FROM sqltest WHERE id = ?`, id); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("InTx = %v, want fn's error", err)
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqltest`).Scan(&n); err != nil || n != 1 {
				t.Errorf("rows after a rolled back delete: %d (%v), want 1", n, err)
			}
		})
	}
}
