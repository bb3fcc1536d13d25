package settings

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

var sqliteMigrations = []string{`
CREATE TABLE settings_generations (
	gen INTEGER PRIMARY KEY,
	committed INTEGER NOT NULL,
	note TEXT NOT NULL,
	author TEXT NOT NULL,
	rollback_of INTEGER NOT NULL DEFAULT 0,
	doc TEXT NOT NULL
);
CREATE TABLE settings_staged (
	key TEXT PRIMARY KEY,
	value TEXT,
	unset INTEGER NOT NULL DEFAULT 0
);`}

// SQLiteStorage keeps the settings in a node's embedded SQLite database.
type SQLiteStorage struct {
	DB *store.DB
}

var _ Storage = SQLiteStorage{}

// Migrate implements Storage.
func (s SQLiteStorage) Migrate(ctx context.Context) error {
	return store.Migrate(ctx, s.DB, "settings", sqliteMigrations)
}

type sqlQueryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func sqliteLatest(ctx context.Context, q sqlQueryer) (Generation, error) {
	var g Generation
	var ts int64
	var doc string
	err := q.QueryRowContext(ctx, `SELECT gen, committed, note, author, rollback_of, doc FROM settings_generations
		ORDER BY gen DESC LIMIT 1`).Scan(&g.Number, &ts, &g.Note, &g.Author, &g.RollbackOf, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return Generation{Values: map[string]string{}}, nil
	}
	if err != nil {
		return Generation{}, wrap(err)
	}
	return decodeGeneration(g, ts, doc)
}

// Latest implements Storage.
func (s SQLiteStorage) Latest(ctx context.Context) (Generation, error) {
	return sqliteLatest(ctx, s.DB)
}

// History implements Storage.
func (s SQLiteStorage) History(ctx context.Context) ([]Generation, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT gen, committed, note, author, rollback_of, doc FROM settings_generations ORDER BY gen DESC`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []Generation
	for rows.Next() {
		var g Generation
		var ts int64
		var doc string
		if err := rows.Scan(&g.Number, &ts, &g.Note, &g.Author, &g.RollbackOf, &doc); err != nil {
			return nil, wrap(err)
		}
		if g, err = decodeGeneration(g, ts, doc); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, wrap(rows.Err())
}

// Stage implements Storage.
func (s SQLiteStorage) Stage(ctx context.Context, changes ...Staged) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES(?, ?, ?)
			ON CONFLICT(key) DO UPDATE SET value = excluded.value, unset = excluded.unset`, c.Key, stagedValue(c), c.Unset); err != nil {
			return wrap(err)
		}
	}
	return wrap(tx.Commit())
}

// ReplaceStaged implements Storage.
func (s SQLiteStorage) ReplaceStaged(ctx context.Context, changes []Staged) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM settings_staged`); err != nil {
		return wrap(err)
	}
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES(?, ?, ?)`, c.Key, stagedValue(c), c.Unset); err != nil {
			return wrap(err)
		}
	}
	return wrap(tx.Commit())
}

type sqlRowsQueryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func sqliteStaged(ctx context.Context, q sqlRowsQueryer) ([]Staged, error) {
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

// Staged implements Storage.
func (s SQLiteStorage) Staged(ctx context.Context) ([]Staged, error) { return sqliteStaged(ctx, s.DB) }

// DiscardStaged implements Storage.
func (s SQLiteStorage) DiscardStaged(ctx context.Context, changes []Staged) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	if err := sqliteUnstage(ctx, tx, changes); err != nil {
		return err
	}
	return wrap(tx.Commit())
}

// sqliteUnstage deletes the staged rows that still hold the changes read earlier. A Stage that landed since
// (another value for the key) is not deleted: it was never committed or shown as discarded.
func sqliteUnstage(ctx context.Context, tx *sql.Tx, changes []Staged) error {
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `DELETE FROM settings_staged WHERE key = ? AND value IS ? AND unset = ?`,
			c.Key, stagedValue(c), c.Unset); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// Commit implements Storage. The store opens transactions with BEGIN IMMEDIATE, so the transaction holds
// SQLite's write lock from its first statement and no other commit interleaves.
func (s SQLiteStorage) Commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return Generation{}, wrap(err)
	}
	defer tx.Rollback()
	latest, err := sqliteLatest(ctx, tx)
	if err != nil {
		return Generation{}, err
	}
	staged, err := sqliteStaged(ctx, tx)
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
	if err := sqliteUnstage(ctx, tx, staged); err != nil {
		return Generation{}, err
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
