package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Filter selects messages for List. Zero fields match everything.
type Filter struct {
	Domain string // messages with a recipient in this domain
	Sender string // exact reverse path ("" matches all; the null sender cannot be selected)
	State  string // messages with a recipient in this state: queued, delivered, failed, quarantined
	// HeldOnly selects held messages.
	HeldOnly bool
	// Limit caps the result; 0 means 1000.
	Limit int
}

// MessageInfo is one line of the queue listing.
type MessageInfo struct {
	ID       string
	From     string
	Size     int64
	Received time.Time
	Expires  time.Time
	Attempts int
	Held     bool
	// State is "held", "quarantined" (no recipient left to deliver) or "queued".
	State string
	// Recipient counts by state.
	Queued, Delivered, Failed, Quarantined int
	Domains                                []string
	// NextAttempt is the earliest next attempt of a queued recipient; zero when none is queued.
	NextAttempt time.Time
	// LastError is the most recent error text of any recipient.
	LastError  string
	RequireTLS bool
	Report     bool
	DSN        bool
}

// RecipientInfo is one recipient with its last result.
type RecipientInfo struct {
	Addr, Domain   string
	Notify         []string
	ORcpt          string
	State          string
	NextAttempt    time.Time
	Attempts       int
	LastCode       int
	LastEnhanced   string
	LastText       string
	LastResultType tlsrpt.ResultType
	LastRemoteMTA  string
	LastTLS        string
	LastPolicy     string
	Updated        time.Time
}

// Attempt is one entry of a message's delivery timeline.
type Attempt struct {
	Rcpt       string
	At         time.Time
	Outcome    Outcome
	Code       int
	Enhanced   string
	Text       string
	RemoteMTA  string
	TLS        string
	Policy     string
	ResultType tlsrpt.ResultType
}

// MessageDetail is everything the queue knows about one message.
type MessageDetail struct {
	MessageInfo
	EnvID            string
	Ret              string
	TLSOptional      bool
	SMTPUTF8         bool
	EightBit         bool
	ClientIP         string
	QuarantineReason string
	Rcpts            []RecipientInfo
	Timeline         []Attempt
}

// Summary is the queue at a glance.
type Summary struct {
	// RecipientsByState counts recipients of messages still in the queue by state.
	RecipientsByState map[string]int `json:"recipients_by_state"`
	// QueuedByDomain counts queued recipients by domain.
	QueuedByDomain map[string]int `json:"queued_by_domain"`
	Messages       int            `json:"messages"`
	Held           int            `json:"held"`
	// Oldest is when the oldest message with a queued recipient was received; OldestAge its age.
	Oldest    time.Time     `json:"oldest"`
	OldestAge time.Duration `json:"oldest_age_ns"`
	InFlight  int           `json:"in_flight"`
}

// Stats are the figures for metrics.
type Stats struct {
	QueuedMessages   int
	QueuedRecipients int
	Oldest           time.Time
	InFlight         int
	// Quarantined counts messages quarantined since Open; Commits the Submit index transactions.
	Quarantined int64
	Commits     int64
}

const listColumns = `m.id, m.sender, m.size, m.received, m.expires, m.attempts, m.held, m.flags,
	SUM(r.state = 'queued'), SUM(r.state = 'delivered'), SUM(r.state = 'failed'), SUM(r.state = 'quarantined'),
	MIN(CASE WHEN r.state = 'queued' THEN r.next_attempt END),
	GROUP_CONCAT(DISTINCT r.domain),
	(SELECT last_text FROM queue_recipients r4 WHERE r4.msg_id = m.id AND r4.last_text != ''
		ORDER BY r4.updated DESC LIMIT 1)`

type scanner interface{ Scan(...any) error }

func scanInfo(s scanner) (MessageInfo, int, error) {
	var mi MessageInfo
	var received, expires int64
	var held, flags int
	var next sql.NullInt64
	var domains, lastErr sql.NullString
	if err := s.Scan(&mi.ID, &mi.From, &mi.Size, &received, &expires, &mi.Attempts, &held, &flags,
		&mi.Queued, &mi.Delivered, &mi.Failed, &mi.Quarantined, &next, &domains, &lastErr); err != nil {
		return mi, 0, err
	}
	mi.Received, mi.Expires, mi.Held = fromNS(received), fromNS(expires), held != 0
	if next.Valid {
		mi.NextAttempt = fromNS(next.Int64)
	}
	if domains.Valid {
		mi.Domains = strings.Split(domains.String, ",")
	}
	mi.LastError = lastErr.String
	mi.RequireTLS, mi.Report, mi.DSN = flags&flagRequireTLS != 0, flags&flagReport != 0, flags&flagDSN != 0
	switch {
	case mi.Held:
		mi.State = "held"
	case mi.Queued == 0 && mi.Quarantined > 0:
		mi.State = stateQuarantined
	default:
		mi.State = stateQueued
	}
	return mi, flags, nil
}

// List returns the messages matching f, oldest first.
func (q *Queue) List(ctx context.Context, f Filter) ([]MessageInfo, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	held := 0
	if f.HeldOnly {
		held = 1
	}
	// With a domain, the messages are found through the recipients' domain index rather than by testing
	// every message: with a million queued, the scan took tens of seconds.
	domainFilter := `(? = '' OR EXISTS (SELECT 1 FROM queue_recipients r2 WHERE r2.msg_id = m.id AND r2.domain = ?))`
	if f.Domain != "" {
		domainFilter = `(? <> '' AND m.id IN (SELECT r2.msg_id FROM queue_recipients r2 WHERE r2.domain = ?))`
	}
	rows, err := q.db.QueryContext(ctx, `SELECT `+listColumns+`
		FROM queue_messages m JOIN queue_recipients r ON r.msg_id = m.id
		WHERE (? = '' OR m.sender = ?) AND (? = 0 OR m.held = 1)
		AND `+domainFilter+`
		AND (? = '' OR EXISTS (SELECT 1 FROM queue_recipients r3 WHERE r3.msg_id = m.id AND r3.state = ?))
		GROUP BY m.id ORDER BY m.received, m.id LIMIT ?`,
		f.Sender, f.Sender, held, strings.ToLower(f.Domain), strings.ToLower(f.Domain), f.State, f.State, limit)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	defer rows.Close()
	var out []MessageInfo
	for rows.Next() {
		mi, _, err := scanInfo(rows)
		if err != nil {
			return nil, fmt.Errorf("queue: list: %w", err)
		}
		out = append(out, mi)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	return out, nil
}

// Get returns message id with its recipients and attempt timeline.
func (q *Queue) Get(ctx context.Context, id string) (MessageDetail, error) {
	var d MessageDetail
	row := q.db.QueryRowContext(ctx, `SELECT `+listColumns+`
		FROM queue_messages m JOIN queue_recipients r ON r.msg_id = m.id WHERE m.id = ? GROUP BY m.id`, id)
	mi, flags, err := scanInfo(row)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return d, fmt.Errorf("queue: get %s: %w", id, err)
	}
	d.MessageInfo = mi
	d.TLSOptional, d.SMTPUTF8, d.EightBit = flags&flagTLSOptional != 0, flags&flagSMTPUTF8 != 0, flags&flag8Bit != 0
	if err := q.db.QueryRowContext(ctx, `SELECT envid, ret, client_ip, COALESCE((SELECT reason FROM queue_quarantine
		WHERE msg_id = ?), '') FROM queue_messages WHERE id = ?`, id, id).Scan(&d.EnvID, &d.Ret, &d.ClientIP, &d.QuarantineReason); err != nil {
		return d, fmt.Errorf("queue: get %s: %w", id, err)
	}
	rows, err := q.db.QueryContext(ctx, `SELECT rcpt, domain, notify, orcpt, state, next_attempt, attempts,
		last_code, last_enhanced, last_text, last_result_type, last_remote_mta, last_tls, last_policy, updated
		FROM queue_recipients WHERE msg_id = ? ORDER BY id`, id)
	if err != nil {
		return d, fmt.Errorf("queue: get %s: %w", id, err)
	}
	for rows.Next() {
		var r RecipientInfo
		var notify string
		var next, updated int64
		if err := rows.Scan(&r.Addr, &r.Domain, &notify, &r.ORcpt, &r.State, &next, &r.Attempts, &r.LastCode,
			&r.LastEnhanced, &r.LastText, &r.LastResultType, &r.LastRemoteMTA, &r.LastTLS, &r.LastPolicy, &updated); err != nil {
			rows.Close()
			return d, fmt.Errorf("queue: get %s: %w", id, err)
		}
		r.Notify, r.NextAttempt, r.Updated = splitNotify(notify), fromNS(next), fromNS(updated)
		d.Rcpts = append(d.Rcpts, r)
	}
	if err := rows.Close(); err != nil {
		return d, fmt.Errorf("queue: get %s: %w", id, err)
	}
	rows, err = q.db.QueryContext(ctx, `SELECT rcpt, at, outcome, code, enhanced, text, remote_mta, tls, policy,
		result_type FROM queue_attempts WHERE msg_id = ? ORDER BY at, id`, id)
	if err != nil {
		return d, fmt.Errorf("queue: get %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var at int64
		var outcome string
		if err := rows.Scan(&a.Rcpt, &at, &outcome, &a.Code, &a.Enhanced, &a.Text, &a.RemoteMTA, &a.TLS, &a.Policy,
			&a.ResultType); err != nil {
			return d, fmt.Errorf("queue: get %s: %w", id, err)
		}
		a.At, a.Outcome = fromNS(at), Outcome(outcome)
		d.Timeline = append(d.Timeline, a)
	}
	return d, rows.Err()
}

// exec runs an update on message id and returns ErrNotFound when the message does not exist.
func (q *Queue) exec(ctx context.Context, op, id, query string, args ...any) error {
	var one int
	err := q.db.QueryRowContext(ctx, `SELECT 1 FROM queue_messages WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("queue: %s %s: %w", op, id, err)
	}
	if _, err := q.db.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("queue: %s %s: %w", op, id, err)
	}
	return nil
}

// Retry makes every queued recipient of message id due now.
func (q *Queue) Retry(ctx context.Context, id string) error {
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	now := ns(q.now())
	err := q.exec(ctx, "retry", id, `UPDATE queue_recipients SET next_attempt = ?, updated = ?
		WHERE msg_id = ? AND state = ?`, now, now, id, stateQueued)
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.ix.retry(id, now)
	q.mu.Unlock()
	q.Kick()
	return nil
}

// Hold stops deliveries of message id until Release; a delivery in flight finishes.
func (q *Queue) Hold(ctx context.Context, id string) error {
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	if err := q.exec(ctx, "hold", id, `UPDATE queue_messages SET held = 1 WHERE id = ?`, id); err != nil {
		return err
	}
	q.mu.Lock()
	q.ix.hold(id)
	q.mu.Unlock()
	return nil
}

// Release undoes Hold.
func (q *Queue) Release(ctx context.Context, id string) error {
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	if err := q.exec(ctx, "release", id, `UPDATE queue_messages SET held = 0 WHERE id = ?`, id); err != nil {
		return err
	}
	q.mu.Lock()
	q.ix.release(id)
	q.mu.Unlock()
	q.Kick()
	return nil
}

// Delete removes message id, its body and history, without a DSN. While a delivery attempt of the message
// is in flight it refuses with ErrInFlight and changes nothing.
func (q *Queue) Delete(ctx context.Context, id string) error {
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	defer tx.Rollback()
	if err := inFlight(ctx, tx, id); err != nil {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM queue_messages WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	for _, stmt := range []string{`DELETE FROM queue_attempts WHERE msg_id = ?`, `DELETE FROM queue_quarantine WHERE msg_id = ?`} {
		if _, err := tx.ExecContext(ctx, stmt, id); err != nil {
			return fmt.Errorf("queue: delete %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	q.mu.Lock()
	q.ix.removeMsg(id)
	q.mu.Unlock()
	q.clearCorrupt(id)
	q.removeBodies([]string{id})
	if validID(id) {
		os.Remove(filepath.Join(q.opts.QuarantineDir, id))
	}
	q.log.Info("queue: message deleted by administrator", "msg_id", id)
	return nil
}

// inFlight returns an error wrapping ErrInFlight when a recipient of message id has a delivery attempt
// whose result is not recorded yet. orderMu is held, so no result is being recorded meanwhile.
func inFlight(ctx context.Context, tx *sql.Tx, id string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND inflight = 1
		AND state = ?`, id, stateQueued).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: %d recipients", ErrInFlight, n)
	}
	return nil
}

// Bounce fails every queued (or quarantined) recipient of message id with status 5.0.0 and sends the DSN
// their NOTIFY asks for. While a delivery attempt of the message is in flight it refuses with ErrInFlight
// and changes nothing: the attempt may have been accepted already, and a bounce would then tell the
// sender a delivered message failed.
func (q *Queue) Bounce(ctx context.Context, id string) error {
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	now := q.now()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	defer tx.Rollback()
	m := &msgRow{id: id}
	var received, expires int64
	err = tx.QueryRowContext(ctx, `SELECT sender, envid, ret, flags, size, received, expires, attempts, body_sum
		FROM queue_messages WHERE id = ?`, id).Scan(&m.from, &m.envid, &m.ret, &m.flags, &m.size, &received, &expires,
		&m.attempts, &m.sum)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	m.received, m.expires = fromNS(received), fromNS(expires)
	if err := inFlight(ctx, tx, id); err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, rcpt, domain, notify, orcpt, attempts, state FROM queue_recipients
		WHERE msg_id = ? AND state IN (?, ?) ORDER BY id`, id, stateQueued, stateQuarantined)
	if err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	var changes []*change
	for rows.Next() {
		r := &rcptRow{msgID: id}
		var notify, state string
		if err := rows.Scan(&r.id, &r.rcpt, &r.domain, &notify, &r.orcpt, &r.attempts, &state); err != nil {
			rows.Close()
			return fmt.Errorf("queue: bounce %s: %w", id, err)
		}
		r.notify = splitNotify(notify)
		res := Result{MsgID: id, Outcome: Failed, Enhanced: "5.0.0", Text: "bounced by administrator"}
		// Bounced whether or not the stored address still parses: what is recorded is the stored text.
		if a, err := address.ParseAddress(r.rcpt); err == nil {
			r.addr, res.Rcpt = a, a
		}
		changes = append(changes, &change{
			row:       r,
			res:       res,
			state:     stateFailed,
			dsnStatus: "5.0.0",
		})
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	var failed []*change
	for _, c := range changes {
		// updateRecipient only touches queued rows; quarantined ones are failed here directly.
		if _, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET state = ? WHERE id = ? AND state = ?`,
			stateQueued, c.row.id, stateQuarantined); err != nil {
			return fmt.Errorf("queue: bounce %s: %w", id, err)
		}
		ok, err := q.updateRecipient(ctx, tx, c, now)
		if err != nil {
			return fmt.Errorf("queue: bounce %s: %w", id, err)
		}
		if ok {
			failed = append(failed, c)
		}
	}
	dsnRec, err := q.queueDSN(ctx, tx, m, failed, now)
	if err != nil {
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	fin, err := q.finishIfDone(ctx, tx, id)
	if err == nil {
		_, err = tx.ExecContext(ctx, `DELETE FROM queue_quarantine WHERE msg_id = ?`, id)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		if dsnRec != nil {
			os.Remove(q.bodyPath(dsnRec.id))
		}
		return fmt.Errorf("queue: bounce %s: %w", id, err)
	}
	q.mu.Lock()
	q.ix.removeMsg(id)
	q.mu.Unlock()
	if dsnRec != nil {
		q.indexRecords(dsnRec)
	}
	if fin {
		q.clearCorrupt(id)
		q.removeBodies([]string{id})
	}
	q.log.Info("queue: message bounced by administrator", "msg_id", id, "recipients", len(failed))
	q.Kick()
	return nil
}

// Summary counts the queue by state and domain.
func (q *Queue) Summary(ctx context.Context) (Summary, error) {
	s := Summary{RecipientsByState: map[string]int{}, QueuedByDomain: map[string]int{}}
	rows, err := q.db.QueryContext(ctx, `SELECT state, domain, COUNT(*) FROM queue_recipients GROUP BY state, domain`)
	if err != nil {
		return s, fmt.Errorf("queue: summary: %w", err)
	}
	for rows.Next() {
		var state, domain string
		var n int
		if err := rows.Scan(&state, &domain, &n); err != nil {
			rows.Close()
			return s, fmt.Errorf("queue: summary: %w", err)
		}
		s.RecipientsByState[state] += n
		if state == stateQueued {
			s.QueuedByDomain[domain] += n
		}
	}
	if err := rows.Close(); err != nil {
		return s, fmt.Errorf("queue: summary: %w", err)
	}
	var oldest sql.NullInt64
	// Ids sort by acceptance time (newID), so the oldest queued message is the first one in id order with
	// a queued recipient: the primary key's order finds it without testing every message.
	if err := q.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(held), 0),
		(SELECT m2.received FROM queue_messages m2 WHERE EXISTS (SELECT 1 FROM queue_recipients r
			WHERE r.msg_id = m2.id AND r.state = 'queued') ORDER BY m2.id LIMIT 1)
		FROM queue_messages`).Scan(&s.Messages, &s.Held, &oldest); err != nil {
		return s, fmt.Errorf("queue: summary: %w", err)
	}
	if oldest.Valid {
		s.Oldest = fromNS(oldest.Int64)
		s.OldestAge = q.now().Sub(s.Oldest)
	}
	q.mu.Lock()
	s.InFlight = q.busy
	q.mu.Unlock()
	return s, nil
}

// Stats returns the figures for metrics.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var oldest sql.NullInt64
	if err := q.db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT r.msg_id), COUNT(*), MIN(m.received)
		FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id WHERE r.state = 'queued'`).Scan(
		&st.QueuedMessages, &st.QueuedRecipients, &oldest); err != nil {
		return st, fmt.Errorf("queue: stats: %w", err)
	}
	if oldest.Valid {
		st.Oldest = fromNS(oldest.Int64)
	}
	q.mu.Lock()
	st.InFlight = q.busy
	q.mu.Unlock()
	st.Quarantined, st.Commits = q.quarantined.Load(), q.commits.Load()
	return st, nil
}
