package settings

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// migration1 is the first version of the schema, in the SQL of both databases (store.Dialect.Schema); {unset}
// is the type of the staged removal flag (migrations). Never edit a released migration: append.
const migration1 = `
CREATE TABLE settings_generations (
	gen {int64} PRIMARY KEY,
	committed {int64} NOT NULL,
	note TEXT NOT NULL,
	author TEXT NOT NULL,
	rollback_of {int64} NOT NULL DEFAULT 0,
	doc TEXT NOT NULL
);
CREATE TABLE settings_staged (
	key TEXT PRIMARY KEY,
	value TEXT,
	unset {unset}
);`

// migrations returns the schema's versions for d: the flag unset is a BOOLEAN on PostgreSQL, 0 or 1 on
// SQLite.
func migrations(d store.Dialect) []string {
	unset := "INTEGER NOT NULL DEFAULT 0"
	if d == store.Postgres {
		unset = "BOOLEAN NOT NULL DEFAULT FALSE"
	}
	return []string{strings.Replace(migration1, "{unset}", unset, 1)}
}

// SQLiteStorage keeps the settings in a node's embedded SQLite database.
type SQLiteStorage struct {
	DB *store.DB
}

// PostgresStorage keeps the settings in the PostgreSQL database a cluster shares: every node reads the same
// generations and the same staged changes.
type PostgresStorage struct {
	PG *store.PG
}

var (
	_ Storage = SQLiteStorage{}
	_ Storage = PostgresStorage{}
)

func (s SQLiteStorage) sql() sqlStorage   { return sqlStorage{s.DB.SQL()} }
func (s PostgresStorage) sql() sqlStorage { return sqlStorage{s.PG.SQL()} }

// Migrate implements Storage.
func (s SQLiteStorage) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Latest implements Storage.
func (s SQLiteStorage) Latest(ctx context.Context) (Generation, error) { return s.sql().latest(ctx) }

// History implements Storage.
func (s SQLiteStorage) History(ctx context.Context) ([]Generation, error) {
	return s.sql().history(ctx)
}

// Stage implements Storage.
func (s SQLiteStorage) Stage(ctx context.Context, changes ...Staged) error {
	return s.sql().stage(ctx, changes)
}

// ReplaceStaged implements Storage.
func (s SQLiteStorage) ReplaceStaged(ctx context.Context, changes []Staged) error {
	return s.sql().replaceStaged(ctx, changes)
}

// Staged implements Storage.
func (s SQLiteStorage) Staged(ctx context.Context) ([]Staged, error) { return s.sql().staged(ctx) }

// DiscardStaged implements Storage.
func (s SQLiteStorage) DiscardStaged(ctx context.Context, changes []Staged) error {
	return s.sql().discardStaged(ctx, changes)
}

// Commit implements Storage. The store opens transactions with BEGIN IMMEDIATE, so the transaction holds
// SQLite's write lock from its first statement and no other commit interleaves.
func (s SQLiteStorage) Commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	return s.sql().commit(ctx, build)
}

// Migrate implements Storage.
func (s PostgresStorage) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Latest implements Storage.
func (s PostgresStorage) Latest(ctx context.Context) (Generation, error) { return s.sql().latest(ctx) }

// History implements Storage.
func (s PostgresStorage) History(ctx context.Context) ([]Generation, error) {
	return s.sql().history(ctx)
}

// Stage implements Storage.
func (s PostgresStorage) Stage(ctx context.Context, changes ...Staged) error {
	return s.sql().stage(ctx, changes)
}

// ReplaceStaged implements Storage.
func (s PostgresStorage) ReplaceStaged(ctx context.Context, changes []Staged) error {
	return s.sql().replaceStaged(ctx, changes)
}

// Staged implements Storage.
func (s PostgresStorage) Staged(ctx context.Context) ([]Staged, error) { return s.sql().staged(ctx) }

// DiscardStaged implements Storage.
func (s PostgresStorage) DiscardStaged(ctx context.Context, changes []Staged) error {
	return s.sql().discardStaged(ctx, changes)
}

// Commit implements Storage. An advisory transaction lock serialises commits from every node, so that each
// builds on the generation before it; the NOTIFY on NotifyChannel is delivered to listening nodes when the
// transaction commits, and not at all if it rolls back.
func (s PostgresStorage) Commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	return s.sql().commit(ctx, build)
}

// commitLock is the transaction-level advisory lock that serialises commits across nodes ("mxgsett").
const commitLock = 0x6d7867736574740

// NotifyChannel is the PostgreSQL notification channel on which a commit announces its generation number.
const NotifyChannel = "mxgate_settings"

// sqlStorage is the settings' SQL, the same on both databases but for a commit's lock and notification.
type sqlStorage struct {
	db store.SQL
}

func (s sqlStorage) migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, "settings", migrations(s.db.Dialect))
}

const selectGenerations = `SELECT gen, committed, note, author, rollback_of, doc FROM settings_generations
	ORDER BY gen DESC`

// scanGeneration reads a row of selectGenerations.
func scanGeneration(scan func(dest ...any) error) (Generation, error) {
	var g Generation
	var ts int64
	var doc string
	if err := scan(&g.Number, &ts, &g.Note, &g.Author, &g.RollbackOf, &doc); err != nil {
		return Generation{}, wrap(err)
	}
	return decodeGeneration(g, ts, doc)
}

// latestIn returns the newest generation, the zero one with empty Values when there is none.
func latestIn(ctx context.Context, q store.Querier) (Generation, error) {
	g, err := scanGeneration(q.QueryRowContext(ctx, selectGenerations+` LIMIT 1`).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Generation{Values: map[string]string{}}, nil
	}
	return g, err
}

func (s sqlStorage) latest(ctx context.Context) (Generation, error) { return latestIn(ctx, s.db) }

func (s sqlStorage) history(ctx context.Context) ([]Generation, error) {
	rows, err := s.db.QueryContext(ctx, selectGenerations)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []Generation
	for rows.Next() {
		g, err := scanGeneration(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, wrap(rows.Err())
}

func (s sqlStorage) stage(ctx context.Context, changes []Staged) error {
	return wrap(s.db.InTx(ctx, func(tx store.Tx) error {
		for _, c := range changes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES(?, ?, ?)
				ON CONFLICT(key) DO UPDATE SET value = excluded.value, unset = excluded.unset`, c.Key, stagedValue(c), c.Unset); err != nil {
				return err
			}
		}
		return nil
	}))
}

func (s sqlStorage) replaceStaged(ctx context.Context, changes []Staged) error {
	return wrap(s.db.InTx(ctx, func(tx store.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM settings_staged`); err != nil {
			return err
		}
		for _, c := range changes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES(?, ?, ?)`, c.Key, stagedValue(c), c.Unset); err != nil {
				return err
			}
		}
		return nil
	}))
}

// stagedIn returns the staged changes, sorted by key.
func stagedIn(ctx context.Context, q store.Querier) ([]Staged, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, COALESCE(value, ''), unset FROM settings_staged ORDER BY key`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []Staged
	for rows.Next() {
		var c Staged
		if err := rows.Scan(&c.Key, &c.Value, &c.Unset); err != nil {
			return nil, wrap(err)
		}
		out = append(out, c)
	}
	return out, wrap(rows.Err())
}

func (s sqlStorage) staged(ctx context.Context) ([]Staged, error) { return stagedIn(ctx, s.db) }

func (s sqlStorage) discardStaged(ctx context.Context, changes []Staged) error {
	return wrap(s.db.InTx(ctx, func(tx store.Tx) error { return unstage(ctx, tx, changes) }))
}

// unstage deletes the staged rows that still hold the changes read earlier. A Stage that landed since
// (another value for the key) is not deleted: it was never committed or shown as discarded.
func unstage(ctx context.Context, tx store.Tx, changes []Staged) error {
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `DELETE FROM settings_staged WHERE key = ? AND value IS NOT DISTINCT FROM CAST(? AS TEXT)
			AND unset = ?`, c.Key, stagedValue(c), c.Unset); err != nil {
			return err
		}
	}
	return nil
}

// commit implements Storage.Commit. On SQLite the transaction holds the write lock from its start; on
// PostgreSQL an advisory lock serialises the commits of every node, and pg_notify tells the listening ones.
func (s sqlStorage) commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return Generation{}, wrap(err)
	}
	defer tx.Rollback()
	pg := tx.Dialect == store.Postgres
	if pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(commitLock)); err != nil {
			return Generation{}, wrap(err)
		}
	}
	latest, err := latestIn(ctx, tx)
	if err != nil {
		return Generation{}, err
	}
	staged, err := stagedIn(ctx, tx)
	if err != nil {
		return Generation{}, err
	}
	g, err := build(latest, staged)
	if err != nil {
		return Generation{}, err
	}
	g.Number = latest.Number + 1
	doc, err := json.Marshal(g.Values)
	if err != nil {
		return Generation{}, wrap(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO settings_generations(gen, committed, note, author, rollback_of, doc)
		VALUES(?, ?, ?, ?, ?, ?)`, g.Number, g.Committed.UnixNano(), g.Note, g.Author, g.RollbackOf, string(doc)); err != nil {
		return Generation{}, fmt.Errorf("settings: commit: %w", err)
	}
	if err := unstage(ctx, tx, staged); err != nil {
		return Generation{}, wrap(err)
	}
	if pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify(?, ?)`, NotifyChannel, fmt.Sprint(g.Number)); err != nil {
			return Generation{}, wrap(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Generation{}, wrap(err)
	}
	g.Committed = time.Unix(0, g.Committed.UnixNano()).UTC()
	return g, nil
}

// stagedValue is the stored value column: NULL for a removal.
func stagedValue(c Staged) any {
	if c.Unset {
		return nil
	}
	return c.Value
}

func decodeGeneration(g Generation, committedNanos int64, doc string) (Generation, error) {
	g.Committed = time.Unix(0, committedNanos).UTC()
	g.Values = map[string]string{}
	if err := json.Unmarshal([]byte(doc), &g.Values); err != nil {
		return Generation{}, fmt.Errorf("settings: generation %d: %w", g.Number, err)
	}
	return g, nil
}
