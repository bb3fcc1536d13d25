package tlsreport

import (
	"context"

	"github.com/mxgate/mxgate/internal/store"
)

// migrations are the versions of the tlsreport component's schema, in the SQL of both databases
// (store.Dialect.Schema). Never edit a released one: append. PostgreSQL's first version is the first two
// (postgresMigrations).
var migrations = []string{
	`CREATE TABLE tlsreport_policies (
		id            {serial} PRIMARY KEY,
		day           TEXT    NOT NULL, -- UTC day, YYYY-MM-DD
		policy_domain TEXT    NOT NULL, -- A-label
		policy_type   TEXT    NOT NULL,
		policy_string TEXT    NOT NULL, -- JSON array of strings
		mx_host       TEXT    NOT NULL, -- JSON array of strings
		success       {int64} NOT NULL DEFAULT 0,
		failure       {int64} NOT NULL DEFAULT 0,
		UNIQUE (day, policy_domain, policy_type, policy_string, mx_host)
	);
	CREATE TABLE tlsreport_failures (
		policy_id      {int64} NOT NULL REFERENCES tlsreport_policies(id) ON DELETE CASCADE,
		result_type    TEXT    NOT NULL,
		sending_ip     TEXT    NOT NULL,
		receiving_mx   TEXT    NOT NULL,
		receiving_helo TEXT    NOT NULL,
		receiving_ip   TEXT    NOT NULL,
		reason_code    TEXT    NOT NULL,
		additional     TEXT    NOT NULL,
		count          {int64} NOT NULL,
		PRIMARY KEY (policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional)
	);
	-- One row per report (day and Policy Domain): its stable report-id, and once claimed for sending, the
	-- gzipped JSON so that retries send exactly the same report.
	CREATE TABLE tlsreport_reports (
		day           TEXT NOT NULL,
		policy_domain TEXT NOT NULL,
		report_id     TEXT NOT NULL UNIQUE,
		unique_id     TEXT NOT NULL, -- ALPHA/DIGIT part of report_id, for the file name
		status        TEXT NOT NULL, -- built | sending | no-record | skipped
		detail        TEXT NOT NULL DEFAULT '',
		report_gz     {blob},
		updated       TEXT NOT NULL,
		PRIMARY KEY (day, policy_domain)
	);
	-- The report log and retry table: one row per report and destination.
	CREATE TABLE tlsreport_deliveries (
		id            {serial} PRIMARY KEY,
		day           TEXT    NOT NULL,
		policy_domain TEXT    NOT NULL,
		report_id     TEXT    NOT NULL,
		destination   TEXT    NOT NULL, -- mailto:addr or the https URL
		status        TEXT    NOT NULL, -- pending | delivered | queued | retrying | failed | suppressed
		attempts      INTEGER NOT NULL DEFAULT 0,
		first_attempt TEXT    NOT NULL DEFAULT '',
		last_attempt  TEXT    NOT NULL DEFAULT '',
		next_attempt  TEXT    NOT NULL DEFAULT '',
		msg_id        TEXT    NOT NULL DEFAULT '',
		last_error    TEXT    NOT NULL DEFAULT '',
		UNIQUE (report_id, destination)
	);
	CREATE INDEX tlsreport_deliveries_due ON tlsreport_deliveries(status, next_attempt);
	CREATE TABLE tlsreport_suppressions (
		entry TEXT PRIMARY KEY, -- lower-case address, domain or https URL
		note  TEXT NOT NULL DEFAULT '',
		added TEXT NOT NULL
	);`,
	// The sender's lease on a delivery: only the holder records its outcome. Hand-over marks of the batches
	// applied (cluster mode's shared store), and the batches a node holds while that store is unreachable.
	`ALTER TABLE tlsreport_deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
	CREATE TABLE tlsreport_handovers (
		id    TEXT PRIMARY KEY,
		added TEXT NOT NULL
	);
	CREATE TABLE tlsreport_held (
		seq   {serial} PRIMARY KEY,
		id    TEXT NOT NULL UNIQUE,
		batch TEXT NOT NULL, -- JSON of a Batch
		added TEXT NOT NULL
	);`,
}

// postgresMigrations are the versions of the PostgreSQL schema: the first was released as the SQLite
// schema's first two together, and version n+1 of SQLite's is version n of PostgreSQL's.
var postgresMigrations = append([]string{migrations[0] + "\n" + migrations[1]}, migrations[2:]...)

// migrate brings the tlsreport tables of db up to date.
func migrate(ctx context.Context, db store.SQL) error {
	if db.Dialect == store.Postgres {
		return db.Migrate(ctx, "tlsreport", postgresMigrations)
	}
	return db.Migrate(ctx, "tlsreport", migrations)
}

// timeFormat is how times are stored: sortable, UTC, whole seconds.
const timeFormat = "2006-01-02T15:04:05Z"

// dayFormat is how UTC days are stored.
const dayFormat = "2006-01-02"
