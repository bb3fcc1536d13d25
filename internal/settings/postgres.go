package settings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/store"
)

var postgresMigrations = []string{`
CREATE TABLE settings_generations (
	gen BIGINT PRIMARY KEY,
	committed BIGINT NOT NULL,
	note TEXT NOT NULL,
	author TEXT NOT NULL,
	rollback_of BIGINT NOT NULL DEFAULT 0,
	doc TEXT NOT NULL
);
CREATE TABLE settings_staged (
	key TEXT PRIMARY KEY,
	value TEXT,
	unset BOOLEAN NOT NULL DEFAULT FALSE
);`}

// PostgresStorage keeps the settings in the PostgreSQL database a cluster shares: every node reads the same
// generations and the same staged changes.
type PostgresStorage struct {
	PG *store.PG
}

var _ Storage = PostgresStorage{}

// commitLock is the transaction-level advisory lock that serialises commits across nodes ("mxgsett").
const commitLock = 0x6d7867736574740

// Migrate implements Storage.
func (s PostgresStorage) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "settings", postgresMigrations)
}

type pgQueryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func pgLatest(ctx context.Context, q pgQueryer) (Generation, error) {
	var g Generation
	var ts int64
	var doc string
	err := q.QueryRow(ctx, `SELECT gen, committed, note, author, rollback_of, doc FROM settings_generations
		ORDER BY gen DESC LIMIT 1`).Scan(&g.Number, &ts, &g.Note, &g.Author, &g.RollbackOf, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return Generation{Values: map[string]string{}}, nil
	}
	if err != nil {
		return Generation{}, wrap(err)
	}
	return decodeGeneration(g, ts, doc)
}

// Latest implements Storage.
func (s PostgresStorage) Latest(ctx context.Context) (Generation, error) { return pgLatest(ctx, s.PG) }

// History implements Storage.
func (s PostgresStorage) History(ctx context.Context) ([]Generation, error) {
	rows, err := s.PG.Query(ctx, `SELECT gen, committed, note, author, rollback_of, doc FROM settings_generations ORDER BY gen DESC`)
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
func (s PostgresStorage) Stage(ctx context.Context, changes ...Staged) error {
	return wrap(pgx.BeginFunc(ctx, s.PG, func(tx pgx.Tx) error {
		for _, c := range changes {
			if _, err := tx.Exec(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES($1, $2, $3)
				ON CONFLICT(key) DO UPDATE SET value = excluded.value, unset = excluded.unset`, c.Key, stagedValue(c), c.Unset); err != nil {
				return err
			}
		}
		return nil
	}))
}

// ReplaceStaged implements Storage.
func (s PostgresStorage) ReplaceStaged(ctx context.Context, changes []Staged) error {
	return wrap(pgx.BeginFunc(ctx, s.PG, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM settings_staged`); err != nil {
			return err
		}
		for _, c := range changes {
			if _, err := tx.Exec(ctx, `INSERT INTO settings_staged(key, value, unset) VALUES($1, $2, $3)`, c.Key, stagedValue(c), c.Unset); err != nil {
				return err
			}
		}
		return nil
	}))
}

func pgStaged(ctx context.Context, q pgQueryer) ([]Staged, error) {
	rows, err := q.Query(ctx, `SELECT key, COALESCE(value, ''), unset FROM settings_staged ORDER BY key`)
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
func (s PostgresStorage) Staged(ctx context.Context) ([]Staged, error) { return pgStaged(ctx, s.PG) }

// DiscardStaged implements Storage.
func (s PostgresStorage) DiscardStaged(ctx context.Context, changes []Staged) error {
	return pgx.BeginFunc(ctx, s.PG, func(tx pgx.Tx) error { return pgUnstage(ctx, tx, changes) })
}

// pgUnstage deletes the staged rows that still hold the changes read earlier. A Stage that landed since
// (another value for the key) is not deleted: it was never committed or shown as discarded.
func pgUnstage(ctx context.Context, tx pgx.Tx, changes []Staged) error {
	for _, c := range changes {
		if _, err := tx.Exec(ctx, `DELETE FROM settings_staged WHERE key = $1 AND value IS NOT DISTINCT FROM $2::text AND unset = $3`,
			c.Key, stagedValue(c), c.Unset); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// Commit implements Storage. An advisory transaction lock serialises commits from every node, so that each
// builds on the generation before it; the NOTIFY on NotifyChannel is delivered to listening nodes when the
// transaction commits, and not at all if it rolls back.
func (s PostgresStorage) Commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	var out Generation
	err := pgx.BeginFunc(ctx, s.PG, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(commitLock)); err != nil {
			return wrap(err)
		}
		latest, err := pgLatest(ctx, tx)
		if err != nil {
			return err
		}
		staged, err := pgStaged(ctx, tx)
		if err != nil {
			return err
		}
		g, err := build(latest, staged)
		if err != nil {
			return err
		}
		g.Number = latest.Number + 1
		doc, err := json.Marshal(g.Values)
		if err != nil {
			return wrap(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO settings_generations(gen, committed, note, author, rollback_of, doc)
			VALUES($1, $2, $3, $4, $5, $6)`, g.Number, g.Committed.UnixNano(), g.Note, g.Author, g.RollbackOf, string(doc)); err != nil {
			return fmt.Errorf("settings: commit: %w", err)
		}
		if err := pgUnstage(ctx, tx, staged); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, fmt.Sprint(g.Number)); err != nil {
			return wrap(err)
		}
		g.Committed = time.Unix(0, g.Committed.UnixNano()).UTC()
		out = g
		return nil
	})
	if err != nil {
		return Generation{}, err
	}
	return out, nil
}

// NotifyChannel is the PostgreSQL notification channel on which a commit announces its generation number.
const NotifyChannel = "mxgate_settings"
