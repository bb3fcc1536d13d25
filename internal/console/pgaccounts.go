package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/store"
)

// postgresMigrations are the versions of the console's PostgreSQL schema (accounts and dashboard
// counters); never edit a released one, append. pos keeps the order accounts were added in, as a password
// file does.
var postgresMigrations = []string{
	`CREATE TABLE console_accounts (
		pos  BIGSERIAL NOT NULL,
		name TEXT PRIMARY KEY,
		role TEXT NOT NULL,
		hash TEXT NOT NULL
	)`,
	`CREATE TABLE console_counters (
		node    TEXT        NOT NULL,
		hour    BIGINT      NOT NULL, -- Unix hour (UTC)
		counts  TEXT        NOT NULL, -- JSON of HourCounters
		updated TIMESTAMPTZ NOT NULL,
		PRIMARY KEY (node, hour)
	)`,
}

// PostgresAccounts keeps the console accounts in the PostgreSQL database a cluster shares (table
// console_accounts), with the same hashes as a password file: an account added on one node logs in on every
// node, and a password changed or an account removed on one ends its sessions on every node (at their next
// request). Its errors wrap admin.ErrNoAccount, admin.ErrAccountExists, admin.ErrLastAdministrator and
// admin.ErrInvalidAccount like PasswordFile's.
type PostgresAccounts struct {
	PG *store.PG
	// Iterations is the PBKDF2 cost of new hashes; 0 means DefaultIterations.
	Iterations int
}

// Migrate creates or updates the table.
func (s *PostgresAccounts) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "console", postgresMigrations)
}

// AccountsGrace is how long after its account was last read a console session goes on while the shared
// database does not answer (a connection that fails or times out). Past it, or on any other error (the
// database answers with an error), the session is refused: an account removed or a password changed on
// another node meanwhile could not be told.
const AccountsGrace = 2 * time.Minute

// AccountsTimeout bounds each read of the shared accounts (a session's lookup at every console request, a
// login, the Accounts page): a database that hangs makes console requests fail or use AccountsGrace
// quickly rather than hold connections of the pool the node's other components share.
const AccountsTimeout = 2 * time.Second

// errAccountsUnreachable marks a lookup that failed because the shared database did not answer.
var errAccountsUnreachable = errors.New("the shared database does not answer")

// unreachable reports whether err means the database could not be reached or did not answer in time, as
// opposed to an answer that is an error (missing table, permission denied).
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is a connection exception; 57P01-57P03 a server shutting down or starting.
		return len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03")
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

func (s *PostgresAccounts) where() string { return "the shared database" }

func (s *PostgresAccounts) fail(err error) error {
	return fmt.Errorf("console: accounts in the shared database %s: %w", store.Redact(s.PG.DSN), err)
}

func (s *PostgresAccounts) entries(ctx context.Context, q pgx.Tx) ([]accountEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, AccountsTimeout)
	defer cancel()
	var rows pgx.Rows
	var err error
	const sel = `SELECT name, role, hash FROM console_accounts ORDER BY pos`
	if q != nil {
		rows, err = q.Query(ctx, sel)
	} else {
		rows, err = s.PG.Query(ctx, sel)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	var out []accountEntry
	for rows.Next() {
		var e accountEntry
		var role string
		if err := rows.Scan(&e.Name, &role, &e.hash); err != nil {
			return nil, s.fail(err)
		}
		e.Role = Role(role)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(err)
	}
	return out, nil
}

// Accounts lists the accounts in the order they were added.
func (s *PostgresAccounts) Accounts(ctx context.Context) ([]admin.Account, error) {
	es, err := s.entries(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Account, len(es))
	for i, e := range es {
		out[i] = admin.Account{Name: e.Name, Role: string(e.Role)}
	}
	return out, nil
}

func (s *PostgresAccounts) lookup(ctx context.Context, name string) (accountEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, AccountsTimeout)
	defer cancel()
	e := accountEntry{Account: Account{Name: name}}
	var role string
	err := s.PG.QueryRow(ctx, `SELECT role, hash FROM console_accounts WHERE name = $1`, name).Scan(&role, &e.hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return accountEntry{}, fmt.Errorf("%w: %s", ErrNoAccount, name)
	}
	if err != nil {
		if unreachable(err) {
			return accountEntry{}, s.fail(fmt.Errorf("%w: %w", errAccountsUnreachable, err))
		}
		return accountEntry{}, s.fail(err)
	}
	e.Role = Role(role)
	return e, nil
}

func (s *PostgresAccounts) anyHash(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, AccountsTimeout)
	defer cancel()
	var h string
	if err := s.PG.QueryRow(ctx, `SELECT hash FROM console_accounts ORDER BY pos LIMIT 1`).Scan(&h); err != nil {
		return ""
	}
	return h
}

// change runs f in a transaction that holds the table's lock: changes from several nodes at once are
// serialised, so that two removals never leave no administrator between them.
func (s *PostgresAccounts) change(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := s.PG.Begin(ctx)
	if err != nil {
		return s.fail(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE console_accounts IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return s.fail(err)
	}
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(err)
	}
	return nil
}

// AddAccount checks the new account's name, role and password length, then adds it.
func (s *PostgresAccounts) AddAccount(ctx context.Context, a admin.NewAccount) error {
	role, err := ParseRole(a.Role)
	if err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalidAccount, err)
	}
	if err := ValidAccountName(a.Name); err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalidAccount, err)
	}
	if err := checkNewPassword(a.Password); err != nil {
		return err
	}
	h, err := hashPassword(a.Password, s.Iterations)
	if err != nil {
		return err
	}
	return s.change(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO console_accounts (name, role, hash) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, a.Name, string(role), h)
		if err != nil {
			return s.fail(err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s", ErrAccountExists, a.Name)
		}
		return nil
	})
}

// SetAccountPassword sets account name's password; its sessions end at their next request, on every node.
func (s *PostgresAccounts) SetAccountPassword(ctx context.Context, name, password string) error {
	if err := checkNewPassword(password); err != nil {
		return err
	}
	h, err := hashPassword(password, s.Iterations)
	if err != nil {
		return err
	}
	tag, err := s.PG.Exec(ctx, `UPDATE console_accounts SET hash = $2 WHERE name = $1`, name, h)
	if err != nil {
		return s.fail(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNoAccount, name)
	}
	return nil
}

// RemoveAccount removes account name, never the last administrator.
func (s *PostgresAccounts) RemoveAccount(ctx context.Context, name string) error {
	return s.change(ctx, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM console_accounts WHERE name = $1`, name).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNoAccount, name)
		}
		if err != nil {
			return s.fail(err)
		}
		if Role(role) == Administrator {
			var others int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM console_accounts WHERE role = $1 AND name <> $2`,
				string(Administrator), name).Scan(&others); err != nil {
				return s.fail(err)
			}
			if others == 0 {
				return fmt.Errorf("%w: %s", ErrLastAdministrator, name)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM console_accounts WHERE name = $1`, name); err != nil {
			return s.fail(err)
		}
		return nil
	})
}

// Seeded says what Seed did.
type Seeded struct {
	// Copied is the number of accounts copied from the password file (0: none, the table had accounts or
	// there was no file).
	Copied int
	// Password, when not empty, is the password of the administrator BootstrapAccount Seed created in an
	// empty table because there was no password file either: shown once, like Bootstrap's.
	Password string
}

// Seed migrates the table and, when it holds no account, fills it once: with the accounts of the password
// file at path (a node that ran on its own before joining the cluster keeps its accounts), or, without a
// file, with the administrator BootstrapAccount and a random password, which it returns. A table that holds
// accounts is left alone, so only the first node to start fills it.
func (s *PostgresAccounts) Seed(ctx context.Context, path string) (Seeded, error) {
	if err := s.Migrate(ctx); err != nil {
		return Seeded{}, err
	}
	// A table another node filled is the usual case: the password file is then not read at all (it may be
	// unreadable, or gone).
	var n int
	if err := s.PG.QueryRow(ctx, `SELECT count(*) FROM console_accounts`).Scan(&n); err != nil {
		return Seeded{}, s.fail(err)
	}
	if n > 0 {
		return Seeded{}, nil
	}
	file, err := readAccounts(path)
	if err != nil && !errors.Is(err, ErrNoPassword) {
		return Seeded{}, err
	}
	var out Seeded
	if file == nil {
		b := make([]byte, 18)
		if _, err := io.ReadFull(rand.Reader, b); err != nil {
			return Seeded{}, fmt.Errorf("console: random: %w", err)
		}
		pw := base64.RawURLEncoding.EncodeToString(b)
		h, err := hashPassword(pw, s.Iterations)
		if err != nil {
			return Seeded{}, err
		}
		file = []accountEntry{{Account: Account{Name: BootstrapAccount, Role: Administrator}, hash: h}}
		out.Password = pw
	}
	err = s.change(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM console_accounts`).Scan(&n); err != nil {
			return s.fail(err)
		}
		if n > 0 {
			out = Seeded{}
			return nil
		}
		for _, e := range file {
			if _, err := tx.Exec(ctx, `INSERT INTO console_accounts (name, role, hash) VALUES ($1, $2, $3)`,
				e.Name, string(e.Role), e.hash); err != nil {
				return s.fail(err)
			}
		}
		if out.Password == "" {
			out.Copied = len(file)
		}
		return nil
	})
	if err != nil {
		return Seeded{}, err
	}
	return out, nil
}
