package queue

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dsn"
)

// msgRow and rcptRow are the index rows of work in flight.
type msgRow struct {
	id, from, envid, ret string
	flags                int
	size                 int64
	received, expires    time.Time
	attempts             int // including the attempt in flight
}

type rcptRow struct {
	id            int64
	msgID, rcpt   string
	notify        []string
	orcpt         string
	attempts      int // including the attempt in flight
	domain        string
	lastResultTxt string
}

// work is one batch handed to a worker.
type work struct {
	batch Batch
	msgs  map[string]*msgRow
	rcpts []*rcptRow
}

// maxIdle bounds the scheduler's sleep so that a jump of the wall clock is noticed.
const maxIdle = time.Minute

// Run is the scheduler. It dispatches due work whenever a Submit or Kick arrives, a worker finishes, or the
// earliest next attempt comes due. When ctx is cancelled it stops dispatching, lets in-flight deliveries run
// for up to DrainTimeout, then cancels them, waits for their results to be applied, and returns nil.
func (q *Queue) Run(ctx context.Context) error {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := maxIdle
		if _, err := q.dispatch(ctx, dctx); err != nil && ctx.Err() == nil {
			q.log.Error("queue: dispatch failed", "err", err)
			wait = 5 * time.Second
		} else if next, ok, err := q.nextDue(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("queue: next due time", "err", err)
			wait = 5 * time.Second
		} else if ok {
			wait = min(max(next.Sub(q.now()), 0), maxIdle)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			q.drain(cancel)
			return nil
		case <-q.kick:
		case <-q.workerDone:
		case <-timer.C:
		}
	}
}

// drain waits for in-flight batches, cancelling their context after DrainTimeout.
func (q *Queue) drain(cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		q.workers.Wait()
		close(done)
	}()
	t := time.NewTimer(q.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		q.log.Warn("queue: drain timeout, cancelling in-flight deliveries")
		cancel()
		<-done
	}
}

// RunOnce dispatches all work that is due now, waits for it to finish, and repeats until nothing is due
// and nothing is in flight (so DSNs queued by the round are delivered too). It returns the number of jobs
// (message and domain pairs) dispatched. It is Run without timers, for tests with a fake clock and for
// tools; do not call it while Run is running.
func (q *Queue) RunOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := q.dispatch(ctx, ctx)
		total += n
		if err != nil {
			q.workers.Wait()
			return total, err
		}
		q.mu.Lock()
		busy := q.busy
		q.mu.Unlock()
		if n == 0 && busy == 0 {
			return total, nil
		}
		select {
		case <-q.workerDone:
		case <-ctx.Done():
			q.workers.Wait()
			return total, ctx.Err()
		}
	}
}

// nextDue returns the earliest next attempt of a queued, unheld recipient.
func (q *Queue) nextDue(ctx context.Context) (time.Time, bool, error) {
	var n sql.NullInt64
	err := q.db.QueryRowContext(ctx, `SELECT MIN(r.next_attempt) FROM queue_recipients r
		JOIN queue_messages m ON m.id = r.msg_id WHERE r.state = ? AND m.held = 0`, stateQueued).Scan(&n)
	if err != nil || !n.Valid {
		return time.Time{}, false, err
	}
	return fromNS(n.Int64), true, nil
}

// dispatch starts workers for due work within the Concurrency and PerDomain limits. Deliveries run with
// dctx; ctx bounds the database work of planning.
func (q *Queue) dispatch(ctx, dctx context.Context) (int, error) {
	now := q.now()
	domains, err := q.dueDomains(ctx, now)
	if err != nil {
		return 0, err
	}
	var works []*work
	for _, d := range domains {
		q.mu.Lock()
		free := q.opts.Concurrency - q.busy - len(works)
		slots := min(free, q.opts.PerDomain-q.domainBusy[d])
		q.mu.Unlock()
		if free <= 0 {
			break
		}
		if slots <= 0 {
			continue
		}
		ws, err := q.loadDomain(ctx, d, now, slots)
		if err != nil {
			return 0, err
		}
		works = append(works, ws...)
	}
	if len(works) == 0 {
		return 0, nil
	}
	if err := q.recordAttempts(ctx, works, now); err != nil {
		return 0, err
	}
	jobs := 0
	q.mu.Lock()
	for _, w := range works {
		q.busy++
		q.domainBusy[w.batch.Domain]++
		for _, r := range w.rcpts {
			q.inflight[r.id] = true
		}
		jobs += len(w.batch.Jobs)
	}
	q.mu.Unlock()
	for _, w := range works {
		q.workers.Add(1)
		go q.worker(dctx, w)
	}
	return jobs, nil
}

func (q *Queue) dueDomains(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT r.domain, MIN(r.next_attempt) FROM queue_recipients r
		JOIN queue_messages m ON m.id = r.msg_id
		WHERE r.state = ? AND m.held = 0 AND r.next_attempt <= ?
		GROUP BY r.domain ORDER BY 2, 1`, stateQueued, ns(now))
	if err != nil {
		return nil, fmt.Errorf("queue: due domains: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		var t int64
		if err := rows.Scan(&d, &t); err != nil {
			return nil, fmt.Errorf("queue: due domains: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// loadDomain groups the due recipients of domain by message into at most slots batches of MaxBatch jobs.
func (q *Queue) loadDomain(ctx context.Context, domain string, now time.Time, slots int) ([]*work, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT r.id, r.msg_id, r.rcpt, r.notify, r.orcpt, r.attempts,
			m.sender, m.envid, m.ret, m.flags, m.size, m.received, m.expires, m.attempts
		FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id
		WHERE r.domain = ? AND r.state = ? AND m.held = 0 AND r.next_attempt <= ?
		ORDER BY r.next_attempt, r.msg_id, r.id`, domain, stateQueued, ns(now))
	if err != nil {
		return nil, fmt.Errorf("queue: load %s: %w", domain, err)
	}
	defer rows.Close()
	limit := slots * q.opts.MaxBatch
	msgs := map[string]*msgRow{}
	var order []string
	byMsg := map[string][]*rcptRow{}
	for rows.Next() {
		r := &rcptRow{domain: domain}
		m := &msgRow{}
		var notify string
		var received, expires int64
		if err := rows.Scan(&r.id, &r.msgID, &r.rcpt, &notify, &r.orcpt, &r.attempts,
			&m.from, &m.envid, &m.ret, &m.flags, &m.size, &received, &expires, &m.attempts); err != nil {
			return nil, fmt.Errorf("queue: load %s: %w", domain, err)
		}
		q.mu.Lock()
		busy := q.inflight[r.id]
		q.mu.Unlock()
		if busy {
			continue
		}
		if _, ok := msgs[r.msgID]; !ok {
			if len(order) == limit {
				break
			}
			m.id, m.received, m.expires = r.msgID, fromNS(received), fromNS(expires)
			m.attempts++
			msgs[r.msgID] = m
			order = append(order, r.msgID)
		}
		r.notify = splitNotify(notify)
		r.attempts++
		byMsg[r.msgID] = append(byMsg[r.msgID], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: load %s: %w", domain, err)
	}
	var works []*work
	for i := 0; i < len(order); i += q.opts.MaxBatch {
		w := &work{batch: Batch{Domain: domain}, msgs: map[string]*msgRow{}}
		for _, id := range order[i:min(i+q.opts.MaxBatch, len(order))] {
			m := msgs[id]
			w.msgs[id] = m
			job := Job{
				MsgID: id, From: m.from, EnvID: m.envid, Ret: m.ret,
				RequireTLS: m.flags&flagRequireTLS != 0, TLSOptional: m.flags&flagTLSOptional != 0,
				SMTPUTF8: m.flags&flagSMTPUTF8 != 0, EightBit: m.flags&flag8Bit != 0, Report: m.flags&flagReport != 0,
				Size: m.size, Attempt: m.attempts, Received: m.received, Expires: m.expires,
				Open: q.opener(id),
			}
			for _, r := range byMsg[id] {
				job.Recipients = append(job.Recipients, Recipient{Addr: r.rcpt, Notify: r.notify, ORcpt: r.orcpt})
				w.rcpts = append(w.rcpts, r)
			}
			w.batch.Jobs = append(w.batch.Jobs, job)
		}
		works = append(works, w)
	}
	return works, nil
}

func (q *Queue) opener(id string) func() (io.ReadCloser, error) {
	path := q.bodyPath(id)
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("queue: open body of %s: %w", id, err)
		}
		return f, nil
	}
}

// recordAttempts counts the attempts before they are made and moves next_attempt to where a retry would
// be, so that a crash (or a failure to record the results) leads to a retry after the backoff rather than
// a loss or an immediate loop.
func (q *Queue) recordAttempts(ctx context.Context, works []*work, now time.Time) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: record attempts: %w", err)
	}
	defer tx.Rollback()
	for _, w := range works {
		for id := range w.msgs {
			if _, err := tx.ExecContext(ctx, `UPDATE queue_messages SET attempts = attempts + 1 WHERE id = ?`, id); err != nil {
				return fmt.Errorf("queue: record attempts: %w", err)
			}
		}
		for _, r := range w.rcpts {
			if _, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET attempts = attempts + 1,
				next_attempt = ?, updated = ? WHERE id = ?`, ns(now.Add(q.backoff(r.attempts))), ns(now), r.id); err != nil {
				return fmt.Errorf("queue: record attempts: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: record attempts: %w", err)
	}
	return nil
}

func (q *Queue) worker(ctx context.Context, w *work) {
	defer q.workers.Done()
	defer q.release(w)
	results, panicked := q.deliver(ctx, w)
	missing := "no result from delivery"
	if panicked {
		missing = "internal error during delivery"
	}
	q.apply(w, results, missing)
}

// deliver is the worker's recovery boundary: a panic in delivery is logged and the batch deferred.
func (q *Queue) deliver(ctx context.Context, w *work) (res []Result, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: delivery panicked; batch deferred", "domain", w.batch.Domain,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res, panicked = nil, true
		}
	}()
	return q.opts.Deliverer.Deliver(ctx, w.batch), false
}

func (q *Queue) release(w *work) {
	q.mu.Lock()
	q.busy--
	if q.domainBusy[w.batch.Domain]--; q.domainBusy[w.batch.Domain] <= 0 {
		delete(q.domainBusy, w.batch.Domain)
	}
	for _, r := range w.rcpts {
		delete(q.inflight, r.id)
	}
	q.mu.Unlock()
	select {
	case q.workerDone <- struct{}{}:
	default:
	}
}

// change is the new state of one recipient after an attempt.
type change struct {
	row   *rcptRow
	res   Result
	state string
	next  time.Time
	// dsnStatus and reason are set for failures.
	dsnStatus string
	reason    string
}

// apply records the results of one batch in one transaction: recipient states, the attempt history,
// the DSNs for failures, and the removal of finished messages.
func (q *Queue) apply(w *work, results []Result, missing string) {
	ctx := context.Background() // results are recorded even while shutting down
	now := q.now()
	byKey := map[[2]string]Result{}
	for _, r := range results {
		byKey[[2]string{r.MsgID, r.Rcpt}] = r
	}
	var changes []*change
	for _, row := range w.rcpts {
		m := w.msgs[row.msgID]
		res, ok := byKey[[2]string{row.msgID, row.rcpt}]
		if !ok {
			// The Deliverer contract: a recipient without a result is deferred.
			res = Result{MsgID: row.msgID, Rcpt: row.rcpt, Outcome: Deferred, Text: missing}
		}
		c := &change{row: row, res: res}
		switch res.Outcome {
		case Delivered:
			c.state = stateDelivered
		case Failed:
			c.state = stateFailed
			c.dsnStatus = normStatus(res.Enhanced, '5')
		default: // Deferred, and anything unknown ("temporary unless proven permanent")
			res.Outcome = Deferred
			c.res.Outcome = Deferred
			if !now.Before(m.expires) {
				// RFC 8461 Section 5.1 / STS-84: expiry is decided after an attempt, never before one.
				c.state = stateFailed
				c.dsnStatus = "5.4.7"
				c.reason = fmt.Sprintf("Delivery time expired: no successful delivery in %d attempts since %s; "+
					"the last error is shown.", row.attempts, m.received.Format(time.RFC1123Z))
			} else {
				c.state = stateQueued
				// Always leave room for one final attempt at the expiry time.
				c.next = now.Add(q.backoff(row.attempts))
				if c.next.After(m.expires) {
					c.next = m.expires
				}
			}
		}
		q.log.Info("delivery", "msg_id", row.msgID, "rcpt", row.rcpt, "domain", row.domain,
			"attempt", row.attempts, "outcome", string(c.res.Outcome), "final_state", c.state,
			"code", res.Code, "enhanced", res.Enhanced, "mx", res.RemoteMTA, "tls", res.TLS,
			"policy", res.Policy, "result_type", res.ResultType, "text", res.Text)
		changes = append(changes, c)
	}

	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		q.log.Error("queue: cannot record delivery results; will retry after backoff", "domain", w.batch.Domain, "err", err)
		return
	}
	var dsnFiles, done []string
	fail := func(err error) {
		tx.Rollback()
		for _, f := range dsnFiles {
			os.Remove(f)
		}
		q.log.Error("queue: cannot record delivery results; will retry after backoff", "domain", w.batch.Domain, "err", err)
	}
	failed := map[string][]*change{}
	var msgOrder []string
	for _, c := range changes {
		applied, err := q.updateRecipient(ctx, tx, c, now)
		if err != nil {
			fail(err)
			return
		}
		if !applied {
			// Deleted, bounced or quarantined by an administrator while in flight.
			q.log.Warn("queue: result for a recipient no longer queued ignored", "msg_id", c.row.msgID, "rcpt", c.row.rcpt)
			continue
		}
		if c.state == stateFailed {
			if len(failed[c.row.msgID]) == 0 {
				msgOrder = append(msgOrder, c.row.msgID)
			}
			failed[c.row.msgID] = append(failed[c.row.msgID], c)
		}
	}
	for _, id := range msgOrder {
		f, err := q.queueDSN(ctx, tx, w.msgs[id], failed[id], now)
		if err != nil {
			fail(err)
			return
		}
		if f != "" {
			dsnFiles = append(dsnFiles, f)
		}
	}
	for id := range w.msgs {
		fin, err := finishIfDone(ctx, tx, id)
		if err != nil {
			fail(err)
			return
		}
		if fin {
			done = append(done, id)
		}
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	q.removeBodies(done)
	if len(dsnFiles) > 0 {
		q.Kick()
	}
}

// updateRecipient writes c and its attempt history; it reports false when the recipient was no longer
// queued.
func (q *Queue) updateRecipient(ctx context.Context, tx *sql.Tx, c *change, now time.Time) (bool, error) {
	r := c.res
	next := c.next
	if next.IsZero() {
		next = now
	}
	res, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET state = ?, next_attempt = ?, last_code = ?,
		last_enhanced = ?, last_text = ?, last_result_type = ?, last_remote_mta = ?, last_tls = ?, last_policy = ?,
		updated = ? WHERE id = ? AND state = ?`,
		c.state, ns(next), r.Code, r.Enhanced, r.Text, r.ResultType, r.RemoteMTA, r.TLS, r.Policy, ns(now),
		c.row.id, stateQueued)
	if err != nil {
		return false, fmt.Errorf("queue: update recipient: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO queue_attempts(msg_id, rcpt, at, outcome, code, enhanced, text,
		remote_mta, tls, policy, result_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.row.msgID, c.row.rcpt, ns(now), string(r.Outcome), r.Code, r.Enhanced, r.Text, r.RemoteMTA, r.TLS,
		r.Policy, r.ResultType); err != nil {
		return false, fmt.Errorf("queue: record attempt: %w", err)
	}
	return true, nil
}

// finishIfDone deletes message id's index rows when no recipient is queued any more; the caller removes the
// body after the commit. A crash in between leaves a body without index rows, which Open moves to the
// quarantine directory.
func finishIfDone(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND state IN (?, ?)`,
		id, stateQueued, stateQuarantined).Scan(&n); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM queue_attempts WHERE msg_id = ?`, id); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM queue_messages WHERE id = ?`, id); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	return true, nil
}

func (q *Queue) removeBodies(ids []string) {
	for _, id := range ids {
		if err := os.Remove(q.bodyPath(id)); err != nil && !os.IsNotExist(err) {
			q.log.Warn("queue: cannot remove body of finished message", "msg_id", id, "err", err)
		}
	}
}

// normStatus returns enh when it is a valid RFC 3463 status of the given class, the same detail with the
// class replaced when the class is wrong, and class.0.0 otherwise (RFC 3464 Section 2.3.4).
func normStatus(enh string, class byte) string {
	if dsn.ValidStatus(enh) {
		if enh[0] == class {
			return enh
		}
		return string(class) + enh[1:]
	}
	return string(class) + ".0.0"
}

// diagnostic is the Diagnostic-Code text of a result: the reply line, or the local error, with the RFC 8460
// result type when the text does not name it.
func diagnostic(r Result) string {
	var parts []string
	if r.Code != 0 {
		parts = append(parts, strconv.Itoa(r.Code))
	}
	if r.Enhanced != "" && !strings.HasPrefix(r.Text, r.Enhanced) {
		parts = append(parts, r.Enhanced)
	}
	if r.Text != "" {
		parts = append(parts, r.Text)
	}
	s := strings.Join(parts, " ")
	if r.ResultType != "" && !strings.Contains(s, r.ResultType) {
		s += " (" + r.ResultType + ")"
	}
	return s
}
