package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/store"
)

// accountsRetry is how often a node that could not seed the shared console accounts at start tries again.
const accountsRetry = 5 * time.Second

// consoleAccounts is where the console accounts are: the password file of data.dir on a single node, the
// shared database in a cluster (so that an account works on every node).
func (d *Daemon) consoleAccounts() console.AccountStore {
	if d.pg != nil {
		return &console.PostgresAccounts{PG: d.pg}
	}
	return console.PasswordFile{Path: filepath.Join(d.cfg.Data.Dir, console.PasswordFileName)}
}

// seedSharedAccounts fills the shared console accounts once, if no node has (console.PostgresAccounts.Seed):
// from this node's password file, or with a first administrator whose password is shown like a single
// node's. When the database does not answer, Run tries again every accountsRetry; logins fail meanwhile,
// saying the accounts cannot be read, while the admin token still works.
func (d *Daemon) seedSharedAccounts(ctx context.Context, o Options, pwFile string) {
	if d.pgDown != nil {
		d.log.Error("console: cannot set the shared console accounts up: the shared database does not answer; trying again", "err", d.pgDown)
		d.accountsPending = func(ctx context.Context) error { return d.trySeedAccounts(ctx, o, pwFile) }
		return
	}
	ictx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	defer cancel()
	if err := d.trySeedAccounts(ictx, o, pwFile); err != nil {
		d.log.Error("console: cannot set the shared console accounts up; trying again", "err", err)
		d.accountsPending = func(ctx context.Context) error { return d.trySeedAccounts(ctx, o, pwFile) }
	}
}

func (d *Daemon) trySeedAccounts(ctx context.Context, o Options, pwFile string) error {
	seeded, err := (&console.PostgresAccounts{PG: d.pg}).Seed(ctx, pwFile)
	if err != nil {
		return err
	}
	switch {
	case seeded.Copied > 0:
		d.log.Warn("console: the shared database held no console account: copied this node's accounts into it; from now on the accounts are the cluster's and this node's password file is no longer read",
			"accounts", seeded.Copied, "password_file", pwFile, "database", store.Redact(d.cfg.Data.Database))
	case seeded.Password != "":
		d.showBootstrapPassword(o, seeded.Password, "the shared database "+store.Redact(d.cfg.Data.Database))
	default:
		if _, err := os.Stat(pwFile); err == nil {
			d.log.Info("console: the accounts are the cluster's, in the shared database; this node's password file is not read", "password_file", pwFile)
		}
	}
	return nil
}

// retrySeedAccounts tries to seed the shared console accounts until it succeeds or ctx ends. It logs the
// first failure and every change of error, not every attempt.
func (d *Daemon) retrySeedAccounts(ctx context.Context, seed func(context.Context) error) {
	t := time.NewTicker(accountsRetry)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
		err := seed(ictx)
		cancel()
		if err == nil {
			d.log.Info("console: shared console accounts ready")
			return
		}
		if ctx.Err() == nil && err.Error() != last {
			last = err.Error()
			d.log.Error("console: cannot set the shared console accounts up; trying again", "err", err, "every", accountsRetry)
		}
	}
}

// showBootstrapPassword shows the first administrator's password once, for the administrator to log in
// and change it (Account page). WARN, so that it shows at every log level.
func (d *Daemon) showBootstrapPassword(o Options, pw, where string) {
	switch {
	case o.ConsolePassword != nil:
		o.ConsolePassword(pw, where)
	case o.BootstrapOut != nil:
		fmt.Fprintf(o.BootstrapOut, "mxgate: web console password for the first login, account %s: %s (stored hashed in %s; change it on the Account page)\n", console.BootstrapAccount, pw, where)
	default:
		d.log.Warn("web console password for the first login: change it on the Account page",
			"console_account", console.BootstrapAccount, "console_password", pw, "password_file", where)
	}
}
