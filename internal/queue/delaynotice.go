package queue

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// Delay notices (RFC 3464 "Action: delayed"): once a recipient has waited Options.DelayWarning since its
// message arrived and an attempt defers it again, its sender gets one notice saying that delivery goes on
// until the message expires, like Sendmail's queuewarn (Postfix's delay_warning_time is off unless set).
// The notice goes with the DSN machinery of bounces (queueDSN), in the transaction that records the
// deferral, and delay_notices remembers whom it covered so that a recipient is warned once.

var delayMigrations = []string{
	`CREATE TABLE delay_notices (
		msg_id TEXT NOT NULL,
		rcpt TEXT NOT NULL,
		at INTEGER NOT NULL,
		PRIMARY KEY (msg_id, rcpt)
	);`,
}

func migrateDelayNotices(ctx context.Context, db *store.DB) error {
	return store.Migrate(ctx, db, "queue_delay_notices", delayMigrations)
}

// wantsDelayNotice applies RFC 3461 Section 4.1: with NOTIFY, a delay notice only when it includes DELAY
// (NEVER excludes everything); without NOTIFY, the configured default (Options.DelayWarningDefault).
func (q *Queue) wantsDelayNotice(notify []string) bool {
	if len(notify) == 0 {
		return q.opts.DelayWarningDefault
	}
	return slices.Contains(notify, "DELAY") && !slices.Contains(notify, "NEVER")
}

// delayNoticeDue reports whether the deferral c of message m earns its recipient a delay notice now, and if
// so records in tx that it got one. Never for DSNs, never for TLS reports (RFC 8460 Section 3: reports
// are not answered), never for a null sender, never twice.
func (q *Queue) delayNoticeDue(ctx context.Context, tx *sql.Tx, m *msgRow, c *change, now time.Time) (bool, error) {
	if q.opts.DelayWarning <= 0 || c.state != stateQueued || m.from == "" || m.flags&(flagDSN|flagReport) != 0 ||
		now.Sub(m.received) < q.opts.DelayWarning || !q.wantsDelayNotice(c.row.notify) {
		return false, nil
	}
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO delay_notices(msg_id, rcpt, at) VALUES (?, ?, ?)`,
		m.id, c.row.rcpt, ns(now))
	if err != nil {
		return false, fmt.Errorf("queue: delay notice for %s: %w", m.id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("queue: delay notice for %s: %w", m.id, err)
	}
	return n == 1, nil
}

// forgetDelayNotices drops the record of message id's notices when it leaves the queue (a statement
// prepared once: it runs for every finished message).
func (q *Queue) forgetDelayNotices(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.StmtContext(ctx, q.st.forgetDelayNotices).ExecContext(ctx, id); err != nil {
		return fmt.Errorf("queue: finish %s: %w", id, err)
	}
	return nil
}
