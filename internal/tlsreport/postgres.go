package tlsreport

import (
	"context"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mxgate/mxgate/internal/store"
)

// postgresMigrations are the versions of this package's PostgreSQL schema; never edit a released one,
// append. The tables and columns are those of the SQLite schema (schema.go, all its versions).
var postgresMigrations = []string{
	`CREATE TABLE tlsreport_policies (
		id            BIGSERIAL PRIMARY KEY,
		day           TEXT   NOT NULL, -- UTC day, YYYY-MM-DD
		policy_domain TEXT   NOT NULL, -- A-label
		policy_type   TEXT   NOT NULL,
		policy_string TEXT   NOT NULL, -- JSON array of strings
		mx_host       TEXT   NOT NULL, -- JSON array of strings
		success       BIGINT NOT NULL DEFAULT 0,
		failure       BIGINT NOT NULL DEFAULT 0,
		UNIQUE (day, policy_domain, policy_type, policy_string, mx_host)
	);
	CREATE TABLE tlsreport_failures (
		policy_id      BIGINT NOT NULL REFERENCES tlsreport_policies(id) ON DELETE CASCADE,
		result_type    TEXT   NOT NULL,
		sending_ip     TEXT   NOT NULL,
		receiving_mx   TEXT   NOT NULL,
		receiving_helo TEXT   NOT NULL,
		receiving_ip   TEXT   NOT NULL,
		reason_code    TEXT   NOT NULL,
		additional     TEXT   NOT NULL,
		count          BIGINT NOT NULL,
		PRIMARY KEY (policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional)
	);
	CREATE TABLE tlsreport_reports (
		day           TEXT NOT NULL,
		policy_domain TEXT NOT NULL,
		report_id     TEXT NOT NULL UNIQUE,
		unique_id     TEXT NOT NULL,
		status        TEXT NOT NULL, -- built | sent | no-record | skipped
		detail        TEXT NOT NULL DEFAULT '',
		report_gz     BYTEA,
		updated       TEXT NOT NULL,
		PRIMARY KEY (day, policy_domain)
	);
	CREATE TABLE tlsreport_deliveries (
		id            BIGSERIAL PRIMARY KEY,
		day           TEXT    NOT NULL,
		policy_domain TEXT    NOT NULL,
		report_id     TEXT    NOT NULL,
		destination   TEXT    NOT NULL,
		status        TEXT    NOT NULL,
		attempts      INTEGER NOT NULL DEFAULT 0,
		first_attempt TEXT    NOT NULL DEFAULT '',
		last_attempt  TEXT    NOT NULL DEFAULT '',
		next_attempt  TEXT    NOT NULL DEFAULT '',
		msg_id        TEXT    NOT NULL DEFAULT '',
		last_error    TEXT    NOT NULL DEFAULT '',
		lease_owner   TEXT    NOT NULL DEFAULT '',
		UNIQUE (report_id, destination)
	);
	CREATE INDEX tlsreport_deliveries_due ON tlsreport_deliveries(status, next_attempt);
	CREATE TABLE tlsreport_suppressions (
		entry TEXT PRIMARY KEY,
		note  TEXT NOT NULL DEFAULT '',
		added TEXT NOT NULL
	);
	CREATE TABLE tlsreport_handovers (
		id    TEXT PRIMARY KEY,
		added TEXT NOT NULL
	);
	CREATE TABLE tlsreport_held (
		seq   BIGSERIAL PRIMARY KEY,
		id    TEXT NOT NULL UNIQUE,
		batch TEXT NOT NULL,
		added TEXT NOT NULL
	);`,
}

// PostgresStore keeps the reports in the PostgreSQL database a cluster shares: every node adds its sessions
// to the same aggregates, and one report per Policy Domain and day is built from them.
type PostgresStore struct {
	sqlStore
	pg *store.PG
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns the store in pg.
func NewPostgresStore(pg *store.PG) *PostgresStore {
	return &PostgresStore{sqlStore: sqlStore{db: stdlib.OpenDBFromPool(pg.Pool), numbered: true}, pg: pg}
}

// Migrate implements Store.
func (s *PostgresStore) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.pg, "tlsreport", postgresMigrations)
}
