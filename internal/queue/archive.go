package queue

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// The archive keeps finished messages (every recipient delivered or failed, or bounced by an administrator)
// findable for Options.ArchiveRetention after they leave the queue: envelope, Message-ID, each recipient's
// final state and every attempt. A message is archived in the transaction that removes it from the queue,
// so it is always in exactly one of the two. Bodies are not kept.
//
// The archive has its own schema component ("queue_archive"), so that its migrations never interleave with
// the queue's.

// DefaultArchiveRetention is how long finished messages stay findable (like the week of logs most sites
// keep at hand).
const DefaultArchiveRetention = 7 * 24 * time.Hour

var archiveMigrations = []string{
	`CREATE TABLE archive_messages (
		id TEXT PRIMARY KEY,
		message_id TEXT NOT NULL DEFAULT '',
		sender TEXT NOT NULL,
		size INTEGER NOT NULL,
		flags INTEGER NOT NULL DEFAULT 0,
		client_ip TEXT NOT NULL DEFAULT '',
		received INTEGER NOT NULL,
		finished INTEGER NOT NULL
	);
	CREATE INDEX archive_messages_finished ON archive_messages(finished);
	CREATE INDEX archive_messages_message_id ON archive_messages(lower(trim(message_id, '<>')));
	CREATE INDEX archive_messages_sender ON archive_messages(lower(sender));
	CREATE TABLE archive_recipients (
		msg_id TEXT NOT NULL REFERENCES archive_messages(id) ON DELETE CASCADE,
		rcpt TEXT NOT NULL,
		domain TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL,
		code INTEGER NOT NULL,
		enhanced TEXT NOT NULL,
		text TEXT NOT NULL,
		result_type TEXT NOT NULL,
		remote_mta TEXT NOT NULL,
		tls TEXT NOT NULL,
		policy TEXT NOT NULL,
		updated INTEGER NOT NULL
	);
	CREATE INDEX archive_recipients_msg ON archive_recipients(msg_id);
	CREATE INDEX archive_recipients_rcpt ON archive_recipients(lower(rcpt));
	CREATE TABLE archive_attempts (
		msg_id TEXT NOT NULL REFERENCES archive_messages(id) ON DELETE CASCADE,
		rcpt TEXT NOT NULL,
		at INTEGER NOT NULL,
		outcome TEXT NOT NULL,
		code INTEGER NOT NULL,
		enhanced TEXT NOT NULL,
		text TEXT NOT NULL,
		remote_mta TEXT NOT NULL,
		tls TEXT NOT NULL,
		policy TEXT NOT NULL,
		result_type TEXT NOT NULL
	);
	CREATE INDEX archive_attempts_msg ON archive_attempts(msg_id, at);`,
	// The tracking outbox (Options.TrackingOutbox): the messages archived since they were last handed over
	// to the cluster's shared tracking. AUTOINCREMENT: a position is never reused.
	`CREATE TABLE archive_outbox (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		msg_id TEXT NOT NULL
	);`,
}

func migrateArchive(ctx context.Context, db *store.DB) error {
	return store.Migrate(ctx, db, "queue_archive", archiveMigrations)
}

// archiveStmts are the archive's statements on the delivery path, prepared once by Open (like stmts: a
// statement cannot be prepared inside a transaction that holds the only connection).
type archiveStmts struct {
	once              sync.Once
	err               error
	msg, rcpts, tries *sql.Stmt
	outbox            *sql.Stmt
}

func (a *archiveStmts) prepare(ctx context.Context, db *store.DB) error {
	a.once.Do(func() {
		for _, s := range []struct {
			dst   **sql.Stmt
			query string
		}{
			{&a.msg, `INSERT OR REPLACE INTO archive_messages(id, message_id, sender, size, flags, client_ip, received, finished)
				SELECT id, ?, sender, size, flags, client_ip, received, ? FROM queue_messages WHERE id = ?`},
			{&a.rcpts, `INSERT INTO archive_recipients(msg_id, rcpt, domain, state, attempts, code, enhanced, text, result_type,
				remote_mta, tls, policy, updated)
				SELECT msg_id, rcpt, domain, state, attempts, last_code, last_enhanced, last_text, last_result_type,
				last_remote_mta, last_tls, last_policy, updated FROM queue_recipients WHERE msg_id = ?`},
			{&a.tries, `INSERT INTO archive_attempts(msg_id, rcpt, at, outcome, code, enhanced, text, remote_mta, tls, policy, result_type)
				SELECT msg_id, rcpt, at, outcome, code, enhanced, text, remote_mta, tls, policy, result_type
				FROM queue_attempts WHERE msg_id = ?`},
			{&a.outbox, `INSERT INTO archive_outbox(msg_id) VALUES (?)`},
		} {
			if *s.dst, a.err = db.PrepareContext(ctx, s.query); a.err != nil {
				a.err = fmt.Errorf("queue: prepare archive: %w", a.err)
				return
			}
		}
	})
	return a.err
}

func (a *archiveStmts) close() {
	for _, st := range []*sql.Stmt{a.msg, a.rcpts, a.tries, a.outbox} {
		if st != nil {
			st.Close()
		}
	}
}

// archive copies finished message id, its recipients and its attempts into the archive, in tx, before the
// queue forgets it. finished is the time it left the queue.
func (q *Queue) archive(ctx context.Context, tx *sql.Tx, id string, finished time.Time) error {
	if q.opts.ArchiveRetention < 0 {
		return nil
	}
	msgID := q.headerMessageID(id)
	for _, st := range []struct {
		stmt *sql.Stmt
		args []any
	}{
		{q.arch.msg, []any{msgID, ns(finished), id}},
		{q.arch.rcpts, []any{id}},
		{q.arch.tries, []any{id}},
	} {
		if _, err := tx.StmtContext(ctx, st.stmt).ExecContext(ctx, st.args...); err != nil {
			return fmt.Errorf("queue: archive %s: %w", id, err)
		}
	}
	if q.opts.TrackingOutbox {
		if _, err := tx.StmtContext(ctx, q.arch.outbox).ExecContext(ctx, id); err != nil {
			return fmt.Errorf("queue: archive %s: %w", id, err)
		}
	}
	return nil
}

// headerMessageID reads the Message-ID field of a spooled message (the part up to the end of the header,
// at most 64 KiB), "" when it has none or the body cannot be read: tracking must never block the queue.
func (q *Queue) headerMessageID(id string) string {
	f, err := os.Open(q.bodyPath(id))
	if err != nil {
		return ""
	}
	defer f.Close()
	r := textproto.NewReader(bufio.NewReader(io.LimitReader(f, 64<<10)))
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}

// pruneArchive removes what finished before cutoff; it runs at most once an hour, from the delivery path.
func (q *Queue) pruneArchive(ctx context.Context, now time.Time) {
	if q.opts.ArchiveRetention < 0 {
		return
	}
	last := q.archivePruned.Load()
	if last != 0 && now.Sub(fromNS(last)) < time.Hour {
		return
	}
	if !q.archivePruned.CompareAndSwap(last, ns(now)) {
		return
	}
	if _, err := q.PruneArchive(ctx, now.Add(-q.opts.ArchiveRetention)); err != nil {
		q.log.Error("queue: pruning the archive", "err", err)
	}
}

// PruneArchive removes the archived messages that finished before cutoff and returns how many.
func (q *Queue) PruneArchive(ctx context.Context, cutoff time.Time) (int64, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		`DELETE FROM archive_attempts WHERE msg_id IN (SELECT id FROM archive_messages WHERE finished < ?)`,
		`DELETE FROM archive_recipients WHERE msg_id IN (SELECT id FROM archive_messages WHERE finished < ?)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt, ns(cutoff)); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM archive_messages WHERE finished < ?`, ns(cutoff))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// TraceQuery selects archived messages. Fields set are combined with AND; Any matches the queue ID, the
// Message-ID (with or without angle brackets), the sender or a recipient.
type TraceQuery struct {
	Any, ID, MessageID, Sender, Recipient string
	// Limit caps the number of messages (default 50), newest first.
	Limit int
}

// Traced is an archived message with its recipients and attempts.
type Traced struct {
	// Node is the cluster node that handled it, when it was found in the cluster's shared tracking (""
	// means this node).
	Node      string
	ID        string
	MessageID string
	From      string
	Size      int64
	ClientIP  string
	Received  time.Time
	Finished  time.Time
	// Report and DSN say the message was a TLS report or a delivery status notification made by mxgate.
	Report, DSN bool
	Recipients  []RecipientInfo
	Attempts    []Attempt
}

// PartialTraceError is the error of a trace that returns what it found but could not search everywhere
// (in a cluster, the shared tracking of the other nodes' messages did not answer).
type PartialTraceError struct {
	Err error
}

func (e *PartialTraceError) Error() string {
	return "only this node's finished messages were searched: the cluster's shared message tracking does not answer: " + e.Err.Error()
}

func (e *PartialTraceError) Unwrap() error { return e.Err }

// ErrBadQuery is returned for a TraceQuery that selects nothing in particular.
var ErrBadQuery = errors.New("queue: trace needs an ID, a Message-ID, a sender or a recipient")

// Trace finds archived messages, newest first.
func (q *Queue) Trace(ctx context.Context, tq TraceQuery) ([]Traced, error) {
	var where []string
	var args []any
	if tq.Any != "" {
		a := strings.ToLower(strings.Trim(tq.Any, "<>"))
		where = append(where, `(m.id = ? OR lower(trim(m.message_id, '<>')) = ? OR lower(m.sender) = ?
			OR m.id IN (SELECT msg_id FROM archive_recipients WHERE lower(rcpt) = ?))`)
		args = append(args, tq.Any, a, a, a)
	}
	if tq.ID != "" {
		where, args = append(where, `m.id = ?`), append(args, tq.ID)
	}
	if tq.MessageID != "" {
		where, args = append(where, `lower(trim(m.message_id, '<>')) = ?`), append(args, strings.ToLower(strings.Trim(tq.MessageID, "<>")))
	}
	if tq.Sender != "" {
		where, args = append(where, `lower(m.sender) = ?`), append(args, strings.ToLower(tq.Sender))
	}
	if tq.Recipient != "" {
		where, args = append(where, `m.id IN (SELECT msg_id FROM archive_recipients WHERE lower(rcpt) = ?)`), append(args, strings.ToLower(tq.Recipient))
	}
	if len(where) == 0 {
		return nil, ErrBadQuery
	}
	limit := tq.Limit
	if limit <= 0 {
		limit = 50
	}
	rows, err := q.db.QueryContext(ctx, `SELECT m.id, m.message_id, m.sender, m.size, m.flags, m.client_ip, m.received, m.finished
		FROM archive_messages m WHERE `+strings.Join(where, " AND ")+` ORDER BY m.finished DESC, m.id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("queue: trace: %w", err)
	}
	var out []Traced
	for rows.Next() {
		var t Traced
		var flags int
		var recv, fin int64
		if err := rows.Scan(&t.ID, &t.MessageID, &t.From, &t.Size, &flags, &t.ClientIP, &recv, &fin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("queue: trace: %w", err)
		}
		t.Received, t.Finished = fromNS(recv), fromNS(fin)
		t.Report, t.DSN = flags&flagReport != 0, flags&flagDSN != 0
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: trace: %w", err)
	}
	for i := range out {
		if err := q.traceDetails(ctx, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Archived is an archived message with its position in the tracking outbox.
type Archived struct {
	Seq int64
	Traced
}

// Outbox returns up to limit messages of the tracking outbox (Options.TrackingOutbox), oldest first: each
// with its outbox position, and, unless the archive has pruned it since, the archived message (an entry
// whose message is gone has an empty ID). DoneOutbox removes what was handed over.
func (q *Queue) Outbox(ctx context.Context, limit int) ([]Archived, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT o.seq, coalesce(m.id, ''), coalesce(m.message_id, ''), coalesce(m.sender, ''),
		coalesce(m.size, 0), coalesce(m.flags, 0), coalesce(m.client_ip, ''), coalesce(m.received, 0), coalesce(m.finished, 0)
		FROM archive_outbox o LEFT JOIN archive_messages m ON m.id = o.msg_id ORDER BY o.seq LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("queue: tracking outbox: %w", err)
	}
	var out []Archived
	for rows.Next() {
		var a Archived
		var flags int
		var recv, fin int64
		if err := rows.Scan(&a.Seq, &a.ID, &a.MessageID, &a.From, &a.Size, &flags, &a.ClientIP, &recv, &fin); err != nil {
			rows.Close()
			return nil, fmt.Errorf("queue: tracking outbox: %w", err)
		}
		a.Received, a.Finished = fromNS(recv), fromNS(fin)
		a.Report, a.DSN = flags&flagReport != 0, flags&flagDSN != 0
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: tracking outbox: %w", err)
	}
	for i := range out {
		if out[i].ID == "" {
			continue
		}
		if err := q.traceDetails(ctx, &out[i].Traced); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DoneOutbox removes the tracking outbox's entries up to position seq.
func (q *Queue) DoneOutbox(ctx context.Context, seq int64) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM archive_outbox WHERE seq <= ?`, seq); err != nil {
		return fmt.Errorf("queue: tracking outbox: %w", err)
	}
	return nil
}

// OutboxBacklog returns how many messages the tracking outbox holds, and when the oldest of them finished
// (zero when none). It reads a few rows whatever the backlog: entries are appended with increasing
// positions and removed oldest first (DoneOutbox), so they are the positions from the first to the last.
func (q *Queue) OutboxBacklog(ctx context.Context) (int, time.Time, error) {
	var first, last, oldest sql.NullInt64
	if err := q.db.QueryRowContext(ctx, `SELECT (SELECT min(seq) FROM archive_outbox), (SELECT max(seq) FROM archive_outbox),
		(SELECT m.finished FROM archive_outbox o JOIN archive_messages m ON m.id = o.msg_id ORDER BY o.seq LIMIT 1)`).
		Scan(&first, &last, &oldest); err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: tracking outbox: %w", err)
	}
	if !first.Valid {
		return 0, time.Time{}, nil
	}
	n := int(last.Int64 - first.Int64 + 1)
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, fromNS(oldest.Int64), nil
}

// dropOutbox empties the tracking outbox of a queue that no longer keeps one (a node that left cluster
// mode): nothing would hand it over.
func (q *Queue) dropOutbox(ctx context.Context) error {
	res, err := q.db.ExecContext(ctx, `DELETE FROM archive_outbox`)
	if err != nil {
		return fmt.Errorf("queue: tracking outbox: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		q.log.Warn("queue: dropped the tracking outbox: not in cluster mode, these finished messages are not handed over to the shared tracking; they stay in this node's archive",
			"messages", n)
	}
	return nil
}

func (q *Queue) traceDetails(ctx context.Context, t *Traced) error {
	rows, err := q.db.QueryContext(ctx, `SELECT rcpt, domain, state, attempts, code, enhanced, text, result_type,
		remote_mta, tls, policy, updated FROM archive_recipients WHERE msg_id = ? ORDER BY rowid`, t.ID)
	if err != nil {
		return fmt.Errorf("queue: trace %s: %w", t.ID, err)
	}
	for rows.Next() {
		var r RecipientInfo
		var upd int64
		if err := rows.Scan(&r.Addr, &r.Domain, &r.State, &r.Attempts, &r.LastCode, &r.LastEnhanced, &r.LastText,
			&r.LastResultType, &r.LastRemoteMTA, &r.LastTLS, &r.LastPolicy, &upd); err != nil {
			rows.Close()
			return fmt.Errorf("queue: trace %s: %w", t.ID, err)
		}
		r.Updated = fromNS(upd)
		t.Recipients = append(t.Recipients, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = q.db.QueryContext(ctx, `SELECT rcpt, at, outcome, code, enhanced, text, remote_mta, tls, policy, result_type
		FROM archive_attempts WHERE msg_id = ? ORDER BY at, rowid`, t.ID)
	if err != nil {
		return fmt.Errorf("queue: trace %s: %w", t.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var at int64
		if err := rows.Scan(&a.Rcpt, &at, &a.Outcome, &a.Code, &a.Enhanced, &a.Text, &a.RemoteMTA, &a.TLS, &a.Policy, &a.ResultType); err != nil {
			return fmt.Errorf("queue: trace %s: %w", t.ID, err)
		}
		a.At = fromNS(at)
		t.Attempts = append(t.Attempts, a)
	}
	return rows.Err()
}

// History is what the queue and the archive hold of the time since a given moment: when each message
// arrived and every recipient attempt, oldest first. The console's dashboard is rebuilt from it at start.
type History struct {
	Accepted []time.Time
	Attempts []Attempt
}

// HistorySince returns the arrivals and attempts from since on, of messages still queued and archived ones.
func (q *Queue) HistorySince(ctx context.Context, since time.Time) (History, error) {
	var h History
	rows, err := q.db.QueryContext(ctx, `SELECT received FROM queue_messages WHERE received >= ? AND flags & ? = 0
		UNION ALL SELECT received FROM archive_messages WHERE received >= ? AND flags & ? = 0 ORDER BY 1`,
		ns(since), flagDSN, ns(since), flagDSN)
	if err != nil {
		return h, fmt.Errorf("queue: history: %w", err)
	}
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			rows.Close()
			return h, fmt.Errorf("queue: history: %w", err)
		}
		h.Accepted = append(h.Accepted, fromNS(at))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return h, fmt.Errorf("queue: history: %w", err)
	}
	const cols = `rcpt, at, outcome, code, enhanced, text, remote_mta, tls, policy, result_type`
	rows, err = q.db.QueryContext(ctx, `SELECT `+cols+` FROM queue_attempts WHERE at >= ?
		UNION ALL SELECT `+cols+` FROM archive_attempts WHERE at >= ? ORDER BY 2`, ns(since), ns(since))
	if err != nil {
		return h, fmt.Errorf("queue: history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var at int64
		if err := rows.Scan(&a.Rcpt, &at, &a.Outcome, &a.Code, &a.Enhanced, &a.Text, &a.RemoteMTA, &a.TLS, &a.Policy, &a.ResultType); err != nil {
			return h, fmt.Errorf("queue: history: %w", err)
		}
		a.At = fromNS(at)
		h.Attempts = append(h.Attempts, a)
	}
	return h, rows.Err()
}
