package mtastscache

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
)

// sqliteMigrations are the versions of this package's SQLite schema; never edit a released one, append.
// Times are Unix nanoseconds, 0 for "never"; max_age is in seconds.
var sqliteMigrations = []string{
	`CREATE TABLE mtasts_policies (
		domain               TEXT PRIMARY KEY,
		id                   TEXT NOT NULL,
		policy               TEXT NOT NULL,
		mode                 TEXT NOT NULL,
		max_age              INTEGER NOT NULL,
		fetched              INTEGER NOT NULL,
		expires              INTEGER NOT NULL,
		last_used            INTEGER NOT NULL DEFAULT 0,
		last_refresh_at      INTEGER NOT NULL DEFAULT 0,
		last_refresh_error   TEXT NOT NULL DEFAULT '',
		consecutive_failures INTEGER NOT NULL DEFAULT 0
	)`,
}

// SQLiteStore keeps the policy cache in a node's embedded SQLite database.
type SQLiteStore struct {
	DB *store.DB
}

var _ Store = SQLiteStore{}

// Migrate implements Store.
func (s SQLiteStore) Migrate(ctx context.Context) error {
	return store.Migrate(ctx, s.DB, "mtastscache", sqliteMigrations)
}

// Load implements Store.
func (s SQLiteStore) Load(ctx context.Context) ([]Record, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT domain, id, policy, mode, max_age, fetched, expires, last_used,
		last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var maxAge, fetched, expires, lastUsed, lastRefreshAt int64
		if err := rows.Scan(&r.Domain, &r.ID, &r.Policy, &r.Mode, &maxAge, &fetched, &expires, &lastUsed,
			&lastRefreshAt, &r.LastRefreshError, &r.Failures); err != nil {
			return nil, err
		}
		r.MaxAge = time.Duration(maxAge) * time.Second
		r.Fetched, r.Expires, r.LastUsed, r.LastRefreshAt = fromDB(fetched), fromDB(expires), fromDB(lastUsed), fromDB(lastRefreshAt)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Save implements Store.
func (s SQLiteStore) Save(ctx context.Context, r Record) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO mtasts_policies(domain, id, policy, mode, max_age, fetched,
		expires, last_used, last_refresh_at, last_refresh_error, consecutive_failures)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, mode = excluded.mode,
			max_age = excluded.max_age, fetched = excluded.fetched, expires = excluded.expires,
			last_used = excluded.last_used, last_refresh_at = excluded.last_refresh_at,
			last_refresh_error = excluded.last_refresh_error,
			consecutive_failures = excluded.consecutive_failures`,
		r.Domain, r.ID, r.Policy, string(r.Mode), int64(r.MaxAge/time.Second),
		toDB(r.Fetched), toDB(r.Expires), toDB(r.LastUsed), toDB(r.LastRefreshAt), r.LastRefreshError, r.Failures)
	return err
}

// Used implements Store.
func (s SQLiteStore) Used(ctx context.Context, domain address.Domain, at time.Time) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE mtasts_policies SET last_used = ? WHERE domain = ? AND last_used < ?`,
		toDB(at), domain.String(), toDB(at))
	return err
}

// Delete implements Store.
func (s SQLiteStore) Delete(ctx context.Context, domain address.Domain) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM mtasts_policies WHERE domain = ?`, domain.String())
	return err
}

// Get returns domain's record; ok is false when there is none.
func (s SQLiteStore) Get(ctx context.Context, domain address.Domain) (Record, bool, error) {
	var r Record
	var maxAge, fetched, expires, lastUsed, lastRefreshAt int64
	err := s.DB.QueryRowContext(ctx, `SELECT domain, id, policy, mode, max_age, fetched, expires, last_used,
		last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies WHERE domain = ?`,
		domain.String()).Scan(&r.Domain, &r.ID, &r.Policy, &r.Mode, &maxAge, &fetched, &expires, &lastUsed,
		&lastRefreshAt, &r.LastRefreshError, &r.Failures)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	r.MaxAge = time.Duration(maxAge) * time.Second
	r.Fetched, r.Expires, r.LastUsed, r.LastRefreshAt = fromDB(fetched), fromDB(expires), fromDB(lastUsed), fromDB(lastRefreshAt)
	return r, true, nil
}
