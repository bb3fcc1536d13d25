package mtastscache

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
)

// The schema, in the SQL of both databases (store.Dialect.Schema). Times are Unix nanoseconds, 0 for
// "never"; max_age is in seconds. Never edit a released migration: append.
const (
	policiesTable = `CREATE TABLE mtasts_policies (
		domain               TEXT PRIMARY KEY,
		id                   TEXT NOT NULL,
		policy               TEXT NOT NULL,
		mode                 TEXT NOT NULL,
		max_age              {int64} NOT NULL,
		fetched              {int64} NOT NULL,
		expires              {int64} NOT NULL,
		last_used            {int64} NOT NULL DEFAULT 0,
		last_refresh_at      {int64} NOT NULL DEFAULT 0,
		last_refresh_error   TEXT NOT NULL DEFAULT '',
		consecutive_failures INTEGER NOT NULL DEFAULT 0
	)`
	// Leases: which node refreshes the cluster's policies (Lease), until when (Unix nanoseconds).
	leasesTable = `CREATE TABLE mtasts_leases (
		name   TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		until  {int64} NOT NULL
	)`
	// Flushes: when a domain's policy was last flushed by an administrator (Unix nanoseconds, the flushing
	// node's clock). A record fetched before that is neither stored (Save) nor read (Load, Get), so that a
	// node that held the policy while the flush was made cannot bring it back. Only a cluster's shared
	// store records flushes (SharedStore.Flush); on a single node and in a node's local copy it stays empty.
	flushesTable = `CREATE TABLE mtasts_flushes (
		domain  TEXT PRIMARY KEY,
		flushed {int64} NOT NULL
	)`
)

var (
	// sqliteMigrations: a single node takes no leases.
	sqliteMigrations   = []string{policiesTable, flushesTable}
	postgresMigrations = []string{policiesTable, leasesTable, flushesTable}
)

// SQLiteStore keeps the policy cache in a node's embedded SQLite database.
type SQLiteStore struct {
	DB *store.DB
}

// PostgresStore keeps the policy cache in the PostgreSQL database a cluster shares.
type PostgresStore struct {
	PG *store.PG
}

var (
	_ Store       = SQLiteStore{}
	_ SharedStore = PostgresStore{}
)

func (s SQLiteStore) sql() sqlStore   { return sqlStore{s.DB.SQL()} }
func (s PostgresStore) sql() sqlStore { return sqlStore{s.PG.SQL()} }

// Migrate implements Store.
func (s SQLiteStore) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Load implements Store.
func (s SQLiteStore) Load(ctx context.Context) ([]Record, error) { return s.sql().load(ctx) }

// Save implements Store.
func (s SQLiteStore) Save(ctx context.Context, r Record) error { return s.sql().save(ctx, r) }

// Used implements Store.
func (s SQLiteStore) Used(ctx context.Context, domain address.Domain, at time.Time) error {
	return s.sql().used(ctx, domain, at)
}

// Delete implements Store.
func (s SQLiteStore) Delete(ctx context.Context, domain address.Domain) error {
	return s.sql().delete(ctx, domain)
}

// Get returns domain's record; ok is false when there is none.
func (s SQLiteStore) Get(ctx context.Context, domain address.Domain) (Record, bool, error) {
	return s.sql().get(ctx, domain)
}

// Migrate implements Store.
func (s PostgresStore) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Load implements Store.
func (s PostgresStore) Load(ctx context.Context) ([]Record, error) { return s.sql().load(ctx) }

// Save implements Store.
func (s PostgresStore) Save(ctx context.Context, r Record) error { return s.sql().save(ctx, r) }

// Used implements Store.
func (s PostgresStore) Used(ctx context.Context, domain address.Domain, at time.Time) error {
	return s.sql().used(ctx, domain, at)
}

// Delete implements Store.
func (s PostgresStore) Delete(ctx context.Context, domain address.Domain) error {
	return s.sql().delete(ctx, domain)
}

// Get implements SharedStore.
func (s PostgresStore) Get(ctx context.Context, domain address.Domain) (Record, bool, error) {
	return s.sql().get(ctx, domain)
}

// Flush implements SharedStore: the record's deletion and the flush time are one transaction.
func (s PostgresStore) Flush(ctx context.Context, domain address.Domain, at time.Time) (bool, error) {
	return s.sql().flush(ctx, domain, at)
}

// Flushes implements SharedStore.
func (s PostgresStore) Flushes(ctx context.Context) (map[address.Domain]time.Time, error) {
	return s.sql().flushes(ctx)
}

// Lease implements SharedStore: one statement, so that two nodes asking at once cannot both get it.
func (s PostgresStore) Lease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var got string
	err := s.PG.SQL().QueryRowContext(ctx, `INSERT INTO mtasts_leases(name, holder, until) VALUES(?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until
			WHERE mtasts_leases.holder = excluded.holder OR mtasts_leases.until < ?
		RETURNING holder`, name, holder, toDB(until), toDB(now)).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return got == holder, nil
}

// sqlStore is the policy cache's SQL, the same on both databases.
type sqlStore struct {
	db store.SQL
}

func (s sqlStore) migrate(ctx context.Context) error {
	if s.db.Dialect == store.Postgres {
		return s.db.Migrate(ctx, "mtastscache", postgresMigrations)
	}
	return s.db.Migrate(ctx, "mtastscache", sqliteMigrations)
}

// selectRecord reads the records fetched after their domain's last flush (if any), as p.
const selectRecord = `SELECT domain, id, policy, mode, max_age, fetched, expires, last_used,
	last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies p WHERE ` + notFlushed

// notFlushed is the condition that the mtasts_policies row p was fetched after its domain's last flush.
const notFlushed = `NOT EXISTS (SELECT 1 FROM mtasts_flushes f WHERE f.domain = p.domain AND f.flushed > p.fetched)`

// scanRecord reads a row of selectRecord.
func scanRecord(scan func(dest ...any) error) (Record, error) {
	var r Record
	var mode string
	var maxAge, fetched, expires, lastUsed, lastRefreshAt int64
	if err := scan(&r.Domain, &r.ID, &r.Policy, &mode, &maxAge, &fetched, &expires, &lastUsed,
		&lastRefreshAt, &r.LastRefreshError, &r.Failures); err != nil {
		return Record{}, err
	}
	r.Mode = mtasts.Mode(mode)
	r.MaxAge = time.Duration(maxAge) * time.Second
	r.Fetched, r.Expires, r.LastUsed, r.LastRefreshAt = fromDB(fetched), fromDB(expires), fromDB(lastUsed), fromDB(lastRefreshAt)
	return r, nil
}

func (s sqlStore) load(ctx context.Context) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, selectRecord)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s sqlStore) get(ctx context.Context, domain address.Domain) (Record, bool, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, selectRecord+` AND domain = ?`, domain.String()).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	return r, true, nil
}

// save writes r, unless it was fetched before its domain's last flush.
func (s sqlStore) save(ctx context.Context, r Record) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO mtasts_policies(domain, id, policy, mode, max_age, fetched,
		expires, last_used, last_refresh_at, last_refresh_error, consecutive_failures)
		SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT),
			CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT),
			CAST(? AS INTEGER)
		WHERE NOT EXISTS (SELECT 1 FROM mtasts_flushes WHERE domain = ? AND flushed > ?)
		ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, mode = excluded.mode,
			max_age = excluded.max_age, fetched = excluded.fetched, expires = excluded.expires,
			last_used = excluded.last_used, last_refresh_at = excluded.last_refresh_at,
			last_refresh_error = excluded.last_refresh_error,
			consecutive_failures = excluded.consecutive_failures`,
		r.Domain, r.ID, r.Policy, string(r.Mode), int64(r.MaxAge/time.Second),
		toDB(r.Fetched), toDB(r.Expires), toDB(r.LastUsed), toDB(r.LastRefreshAt), r.LastRefreshError, r.Failures,
		r.Domain, toDB(r.Fetched))
	return err
}

// flush removes domain's record and records the flush at at (the later of two flushes stays), in one
// transaction; held reports whether there was a record (fetched after any earlier flush) to remove.
func (s sqlStore) flush(ctx context.Context, domain address.Domain, at time.Time) (held bool, err error) {
	err = s.db.InTx(ctx, func(tx store.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM mtasts_policies WHERE domain = ? AND NOT EXISTS (
			SELECT 1 FROM mtasts_flushes f WHERE f.domain = mtasts_policies.domain AND f.flushed > mtasts_policies.fetched)`,
			domain.String())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		held = n > 0
		if _, err := tx.ExecContext(ctx, `DELETE FROM mtasts_policies WHERE domain = ?`, domain.String()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO mtasts_flushes(domain, flushed) VALUES(?, ?)
			ON CONFLICT(domain) DO UPDATE SET flushed = CASE WHEN excluded.flushed > mtasts_flushes.flushed
				THEN excluded.flushed ELSE mtasts_flushes.flushed END`, domain.String(), toDB(at))
		return err
	})
	return held, err
}

// flushes returns the time of every domain's last flush.
func (s sqlStore) flushes(ctx context.Context) (map[address.Domain]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT domain, flushed FROM mtasts_flushes`)
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

func (s sqlStore) used(ctx context.Context, domain address.Domain, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE mtasts_policies SET last_used = ? WHERE domain = ? AND last_used < ?`,
		toDB(at), domain.String(), toDB(at))
	return err
}

func (s sqlStore) delete(ctx context.Context, domain address.Domain) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM mtasts_policies WHERE domain = ?`, domain.String())
	return err
}
