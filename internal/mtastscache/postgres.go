package mtastscache

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
)

// postgresMigrations are the versions of this package's PostgreSQL schema; never edit a released one,
// append. The columns are those of the SQLite schema, with 64-bit integers for the nanosecond times.
var postgresMigrations = []string{
	`CREATE TABLE mtasts_policies (
		domain               TEXT PRIMARY KEY,
		id                   TEXT NOT NULL,
		policy               TEXT NOT NULL,
		mode                 TEXT NOT NULL,
		max_age              BIGINT NOT NULL,
		fetched              BIGINT NOT NULL,
		expires              BIGINT NOT NULL,
		last_used            BIGINT NOT NULL DEFAULT 0,
		last_refresh_at      BIGINT NOT NULL DEFAULT 0,
		last_refresh_error   TEXT NOT NULL DEFAULT '',
		consecutive_failures INTEGER NOT NULL DEFAULT 0
	)`,
	// Leases: which node refreshes the cluster's policies (Lease), until when (Unix nanoseconds).
	`CREATE TABLE mtasts_leases (
		name   TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		until  BIGINT NOT NULL
	)`,
	// Flushes: when a domain's policy was last flushed by an administrator (Unix nanoseconds, the flushing
	// node's clock). A record fetched before that is neither stored (Save) nor read (Load, Get), so
	// that a node that held the policy while the flush was made cannot bring it back.
	`CREATE TABLE mtasts_flushes (
		domain  TEXT PRIMARY KEY,
		flushed BIGINT NOT NULL
	)`,
}

// notFlushed is the condition that the mtasts_policies row p was fetched after its domain's last flush.
const notFlushed = `NOT EXISTS (SELECT 1 FROM mtasts_flushes f WHERE f.domain = p.domain AND f.flushed > p.fetched)`

// PostgresStore keeps the policy cache in the PostgreSQL database a cluster shares.
type PostgresStore struct {
	PG *store.PG
}

var _ SharedStore = PostgresStore{}

// Migrate implements Store.
func (s PostgresStore) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "mtastscache", postgresMigrations)
}

// Load implements Store.
func (s PostgresStore) Load(ctx context.Context) ([]Record, error) {
	rows, err := s.PG.Query(ctx, `SELECT domain, id, policy, mode, max_age, fetched, expires, last_used,
		last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies p WHERE `+notFlushed)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var mode string
		var maxAge, fetched, expires, lastUsed, lastRefreshAt int64
		if err := rows.Scan(&r.Domain, &r.ID, &r.Policy, &mode, &maxAge, &fetched, &expires, &lastUsed,
			&lastRefreshAt, &r.LastRefreshError, &r.Failures); err != nil {
			return nil, err
		}
		r.Mode = mtasts.Mode(mode)
		r.MaxAge = time.Duration(maxAge) * time.Second
		r.Fetched, r.Expires, r.LastUsed, r.LastRefreshAt = fromDB(fetched), fromDB(expires), fromDB(lastUsed), fromDB(lastRefreshAt)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Save implements Store. A record fetched no later than its domain's last flush is not written.
func (s PostgresStore) Save(ctx context.Context, r Record) error {
	_, err := s.PG.Exec(ctx, `INSERT INTO mtasts_policies(domain, id, policy, mode, max_age, fetched,
		expires, last_used, last_refresh_at, last_refresh_error, consecutive_failures)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint, $8::bigint,
			$9::bigint, $10::text, $11::integer
		WHERE NOT EXISTS (SELECT 1 FROM mtasts_flushes WHERE domain = $1::text AND flushed > $6::bigint)
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
func (s PostgresStore) Used(ctx context.Context, domain address.Domain, at time.Time) error {
	_, err := s.PG.Exec(ctx, `UPDATE mtasts_policies SET last_used = $1 WHERE domain = $2 AND last_used < $1`,
		toDB(at), domain.String())
	return err
}

// Delete implements Store.
func (s PostgresStore) Delete(ctx context.Context, domain address.Domain) error {
	_, err := s.PG.Exec(ctx, `DELETE FROM mtasts_policies WHERE domain = $1`, domain.String())
	return err
}

// Get implements SharedStore.
func (s PostgresStore) Get(ctx context.Context, domain address.Domain) (Record, bool, error) {
	var r Record
	var mode string
	var maxAge, fetched, expires, lastUsed, lastRefreshAt int64
	err := s.PG.QueryRow(ctx, `SELECT domain, id, policy, mode, max_age, fetched, expires, last_used,
		last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies p WHERE domain = $1
		AND `+notFlushed,
		domain.String()).Scan(&r.Domain, &r.ID, &r.Policy, &mode, &maxAge, &fetched, &expires, &lastUsed,
		&lastRefreshAt, &r.LastRefreshError, &r.Failures)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	r.Mode = mtasts.Mode(mode)
	r.MaxAge = time.Duration(maxAge) * time.Second
	r.Fetched, r.Expires, r.LastUsed, r.LastRefreshAt = fromDB(fetched), fromDB(expires), fromDB(lastUsed), fromDB(lastRefreshAt)
	return r, true, nil
}

// Flush implements SharedStore: the record's deletion and the flush time are one transaction.
func (s PostgresStore) Flush(ctx context.Context, domain address.Domain, at time.Time) (bool, error) {
	var held bool
	err := pgx.BeginFunc(ctx, s.PG, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM mtasts_policies p WHERE domain = $1 AND `+notFlushed, domain.String())
		if err != nil {
			return err
		}
		held = tag.RowsAffected() > 0
		if _, err := tx.Exec(ctx, `DELETE FROM mtasts_policies WHERE domain = $1`, domain.String()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO mtasts_flushes(domain, flushed) VALUES($1, $2)
			ON CONFLICT(domain) DO UPDATE SET flushed = GREATEST(mtasts_flushes.flushed, excluded.flushed)`,
			domain.String(), toDB(at))
		return err
	})
	return held, err
}

// Flushes implements SharedStore.
func (s PostgresStore) Flushes(ctx context.Context) (map[address.Domain]time.Time, error) {
	rows, err := s.PG.Query(ctx, `SELECT domain, flushed FROM mtasts_flushes`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[address.Domain]time.Time{}
	for rows.Next() {
		var d string
		var at int64
		if err := rows.Scan(&d, &at); err != nil {
			return nil, err
		}
		if dom, err := address.ParseDomain(d); err == nil {
			out[dom] = fromDB(at)
		}
	}
	return out, rows.Err()
}

// Lease implements SharedStore: one statement, so that two nodes asking at once cannot both get it.
func (s PostgresStore) Lease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var got string
	err := s.PG.QueryRow(ctx, `INSERT INTO mtasts_leases(name, holder, until) VALUES($1, $2, $3)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until
			WHERE mtasts_leases.holder = excluded.holder OR mtasts_leases.until < $4
		RETURNING holder`, name, holder, toDB(until), toDB(now)).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return got == holder, nil
}
