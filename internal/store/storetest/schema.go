package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
)

// Schema describes the tables of db, but for schema_versions, one line a column, index and constraint,
// in an order of its own: two databases with the same Schema have the same tables, columns (names, types,
// order, nullability, defaults), keys, indexes and constraints. It fails the test on an error.
func Schema(t testing.TB, db store.SQL) string {
	t.Helper()
	queries := []string{
		`SELECT m.name, c.cid, c.name, c.type, c."notnull", COALESCE(c.dflt_value, ''), c.pk
			FROM sqlite_master m, pragma_table_info(m.name) c
			WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> 'schema_versions' ORDER BY 1, 2`,
		`SELECT m.name, f.id, f.seq, f."table", f."from", f."to", f.on_update, f.on_delete
			FROM sqlite_master m, pragma_foreign_key_list(m.name) f
			WHERE m.type = 'table' AND m.name <> 'schema_versions' ORDER BY 1, 2, 3`,
		`SELECT tbl_name, name, COALESCE(sql, '') FROM sqlite_master
			WHERE type = 'index' AND tbl_name <> 'schema_versions' ORDER BY 1, 2`,
	}
	if db.Dialect == store.Postgres {
		queries = []string{
			`SELECT table_name, ordinal_position, column_name, data_type, is_nullable, COALESCE(column_default, '')
				FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name <> 'schema_versions' ORDER BY 1, 2`,
			`SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
				WHERE connamespace = current_schema()::regnamespace AND conrelid::regclass::text <> 'schema_versions'
				ORDER BY 1, 2`,
			`SELECT tablename, indexname, indexdef FROM pg_indexes
				WHERE schemaname = current_schema() AND tablename <> 'schema_versions' ORDER BY 1, 2`,
		}
	}
	var b strings.Builder
	for _, q := range queries {
		rows, err := db.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatalf("schema of the %s database: %v", db.Dialect, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if i > 0 {
					b.WriteString(" | ")
				}
				if s, ok := v.([]byte); ok {
					v = string(s)
				}
				fmt.Fprint(&b, v)
			}
			b.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return b.String()
}

// SameSchema checks that migrating a fresh database of each dialect with the component's current
// migrations (migrate) builds the schema its released migrations built, and that a database at the
// released version then takes migrate: existing databases keep working. released holds, per dialect, the
// component's migrations as released, to the letter; they are applied under component.
func SameSchema(t *testing.T, component string, released map[store.Dialect][]string, migrate func(context.Context, store.SQL) error) {
	for d, open := range map[store.Dialect]func(t *testing.T) store.SQL{
		store.SQLite:   func(t *testing.T) store.SQL { return SQLite(t).SQL() },
		store.Postgres: func(t *testing.T) store.SQL { return Postgres(t).SQL() },
	} {
		t.Run(d.String(), func(t *testing.T) {
			ctx := t.Context()
			old := open(t)
			if err := old.Migrate(ctx, component, released[d]); err != nil {
				t.Fatalf("released migrations: %v", err)
			}
			fresh := open(t)
			if err := migrate(ctx, fresh); err != nil {
				t.Fatalf("current migrations: %v", err)
			}
			want := Schema(t, old)
			if got := Schema(t, fresh); got != want {
				t.Errorf("the current migrations build\n%s\nthe released ones built\n%s", got, want)
			}
			if err := migrate(ctx, old); err != nil {
				t.Errorf("current migrations on a database of the released ones: %v", err)
			}
		})
	}
}
