package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dsn"
)

// msgRow and rcptRow are the index rows of work in flight.
type msgRow struct {
	// from is the reverse path as stored ("" for the null path); path is its parsed form, once loaded for
	// delivery, and badPath the error when it no longer parses.
	id, from, envid, ret string
	path                 address.Path
	badPath              error
	flags                int
	size                 int64
	sum                  []byte // SHA-256 of the body; nil for messages accepted before it was kept
	received, expires    time.Time
	attempts             int // including the attempt in flight (counted in the index once recorded)
}

type rcptRow struct {
	id    int64
	msgID string
	// rcpt is the address as stored; addr its parsed form, once loaded for delivery (results are matched
	// on it), and bad why the recipient cannot be delivered when the stored text no longer parses.
	rcpt     string
	addr     address.Address
	bad      *Result
	notify   []string
	orcpt    string
	attempts int // including the attempt in flight (counted in the index once recorded)
	domain   string
	// retryAt is the next attempt recorded before delivery: where the recipient stays if the results
	// cannot be recorded.
	retryAt time.Time
}

// work is one batch handed to a worker.
type work struct {
	batch Batch
	// domain is the batch's domain as the index names it (the stored text).
	domain string
	msgs   map[string]*msgRow
	rcpts  []*rcptRow

	// badMu guards bad: per message, why a body read by this batch failed verification (or could not be
	// opened because another read had failed). Corruption is a fact about a read, not a message: another
	// batch of the same message that verified its body and got a 250 is recorded as delivered.
	badMu sync.Mutex
	bad   map[string]string
}

// badRead notes that this batch's read of message id's body failed verification.
func (w *work) badRead(id, reason string) {
	w.badMu.Lock()
	defer w.badMu.Unlock()
	if w.bad == nil {
		w.bad = map[string]string{}
	}
	w.bad[id] = reason
}

// corruptRead returns why this batch's read of message id's body failed verification, or "".
func (w *work) corruptRead(id string) string {
	w.badMu.Lock()
	defer w.badMu.Unlock()
	return w.bad[id]
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
	full := false // dispatch fails for lack of room: logged once, until it works again
	for {
		wait := maxIdle
		if _, err := q.dispatch(ctx, dctx); err != nil && ctx.Err() == nil {
			if !full || !noSpace(err) {
				q.log.Error("queue: dispatch failed", "err", err)
			}
			full = noSpace(err)
			wait = 5 * time.Second
		} else {
			full = false
			if next, ok := q.nextDue(); ok {
				wait = min(max(next.Sub(q.now()), 0), maxIdle)
			}
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

// nextDue returns when the scheduler next has work to start: the earliest time a domain with a free slot
// may start a batch. It reports false when there is none, or when every worker is busy (a finishing worker
// wakes the scheduler).
func (q *Queue) nextDue() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.busy >= q.opts.Concurrency {
		return time.Time{}, false
	}
	d, key := q.ix.first()
	if d == nil {
		return time.Time{}, false
	}
	return fromNS(key), true
}

// maxRounds bounds the rounds of one dispatch that only found stale index entries.
const maxRounds = 8

// dispatch starts workers for due work within the Concurrency and PerDomain limits. Deliveries run with
// dctx; ctx bounds the database work of planning.
func (q *Queue) dispatch(ctx, dctx context.Context) (int, error) {
	total := 0
	for range maxRounds {
		n, picked, err := q.dispatchRound(ctx, dctx)
		total += n
		if noSpace(err) {
			// Recording the attempts needs room: give the index the reserved room for the next round.
			q.space.indexFull(err)
		}
		// Repeat only when index entries turned out stale (picked, not dispatched): more may be due.
		if err != nil || picked == n {
			return total, err
		}
	}
	return total, nil
}

// pick is one batch taken from the index, before it is checked against the database.
type pick struct {
	domain string
	rcpts  []*dueRcpt
}

// dispatchRound takes the due batches from the index, then reads and checks each recipient in one
// transaction that also records the attempts, and starts the workers. It returns the jobs dispatched and
// the jobs (message and domain pairs) taken from the index.
func (q *Queue) dispatchRound(ctx, dctx context.Context) (dispatched, picked int, err error) {
	now := q.now()
	var picks []pick
	q.mu.Lock()
	for q.busy < q.opts.Concurrency {
		d, key := q.ix.first()
		if d == nil || key > ns(now) {
			break
		}
		rs := q.ix.take(d, ns(now))
		if len(rs) == 0 {
			break // cannot happen: a ready domain's key is never before its first recipient is due
		}
		q.busy++
		picks = append(picks, pick{domain: d.name, rcpts: rs})
		seen := map[string]bool{}
		for _, r := range rs {
			if !seen[r.msgID] {
				seen[r.msgID] = true
				picked++
			}
		}
	}
	q.mu.Unlock()
	if len(picks) == 0 {
		return 0, 0, nil
	}
	q.rounds.Add(1)
	q.orderMu.Lock()
	defer q.orderMu.Unlock()
	works, back, err := q.load(ctx, picks, now)
	q.mu.Lock()
	if err != nil {
		// Nothing was recorded: everything goes back as it was.
		works = nil
		back = back[:0]
		for _, p := range picks {
			back = append(back, p.rcpts...)
		}
	}
	for _, r := range back {
		q.ix.add(r.id, r.msgID, r.domain, r.next)
	}
	for i, p := range picks {
		if i >= len(works) || len(works[i].rcpts) == 0 {
			q.busy--
			q.ix.done(p.domain)
		}
	}
	q.mu.Unlock()
	if err != nil {
		return 0, picked, err
	}
	for _, w := range works {
		if len(w.rcpts) == 0 {
			continue
		}
		dispatched += len(w.batch.Jobs)
		q.workers.Add(1)
		go q.worker(dctx, w)
	}
	return dispatched, picked, nil
}

// load reads the picked recipients with their messages in one transaction, drops those that are no longer
// queued, and marks the attempts as in flight: it moves next_attempt to where a retry would be, so that a
// failure to record the results leads to a retry after the backoff rather than a loss or an immediate
// loop, but counts nothing. The attempt is counted when its result is recorded; after a crash, recover
// makes in-flight recipients due at once without counting the interrupted attempt. It returns one work per
// pick (possibly with no jobs) and the recipients to put back into the index: held, or not due yet after
// all.
func (q *Queue) load(ctx context.Context, picks []pick, now time.Time) ([]*work, []*dueRcpt, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: load batch: %w", err)
	}
	defer tx.Rollback()
	load := tx.StmtContext(ctx, q.st.loadRcpt)
	bumpRcpt := tx.StmtContext(ctx, q.st.bumpRcpt)
	var back []*dueRcpt
	works := make([]*work, 0, len(picks))
	for _, p := range picks {
		host, hostErr := address.ParseHost(p.domain)
		w := &work{batch: Batch{Domain: host}, domain: p.domain, msgs: map[string]*msgRow{}}
		var order []string
		byMsg := map[string][]*rcptRow{}
		for _, e := range p.rcpts {
			r := &rcptRow{id: e.id, domain: p.domain}
			m := &msgRow{}
			var notify, state string
			var next, received, expires int64
			var held bool
			err := load.QueryRowContext(ctx, e.id).Scan(&r.msgID, &r.rcpt, &notify, &r.orcpt, &r.attempts, &state,
				&next, &m.from, &m.envid, &m.ret, &m.flags, &m.size, &received, &expires, &m.attempts, &held, &m.sum)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				continue // deleted
			case err != nil:
				return nil, nil, fmt.Errorf("queue: load batch for %s: %w", p.domain, err)
			case state != stateQueued:
				continue // bounced or quarantined
			case held || next > ns(now):
				// Held, or moved later, since it was indexed: back into the index, as the database has it.
				e.next = next
				back = append(back, e)
				continue
			}
			if _, ok := w.msgs[r.msgID]; !ok {
				m.id, m.received, m.expires = r.msgID, fromNS(received), fromNS(expires)
				m.attempts++
				if m.path, err = address.ParsePath(m.from); err != nil {
					m.badPath = err
				}
				w.msgs[r.msgID] = m
				order = append(order, r.msgID)
			}
			// The index holds what Submit checked, so the stored text parses; if it no longer does (an
			// edited database, a stricter parser), the recipient fails now with the reason rather than
			// being retried until it expires.
			r.addr, r.bad = parseStored(r.rcpt, hostErr, w.msgs[r.msgID].badPath)
			r.notify = splitNotify(notify)
			r.attempts++
			r.retryAt = now.Add(q.backoff(r.attempts))
			byMsg[r.msgID] = append(byMsg[r.msgID], r)
		}
		for _, id := range order {
			m := w.msgs[id]
			job := Job{
				MsgID: id, From: m.path, EnvID: m.envid, Ret: m.ret,
				RequireTLS: m.flags&flagRequireTLS != 0, TLSOptional: m.flags&flagTLSOptional != 0,
				SMTPUTF8: m.flags&flagSMTPUTF8 != 0, EightBit: m.flags&flag8Bit != 0, Report: m.flags&flagReport != 0,
				Size: m.size, Attempt: m.attempts, Received: m.received, Expires: m.expires,
				Open: q.opener(w, id, m.sum),
			}
			for _, r := range byMsg[id] {
				if r.bad == nil {
					job.Recipients = append(job.Recipients, Recipient{Addr: r.addr, Notify: r.notify, ORcpt: r.orcpt})
				}
				w.rcpts = append(w.rcpts, r)
				if _, err := bumpRcpt.ExecContext(ctx, ns(r.retryAt), ns(now), r.id); err != nil {
					return nil, nil, fmt.Errorf("queue: record attempts: %w", err)
				}
			}
			if len(job.Recipients) > 0 {
				w.batch.Jobs = append(w.batch.Jobs, job)
			}
		}
		works = append(works, w)
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("queue: record attempts: %w", err)
	}
	return works, back, nil
}

// parseStored parses a recipient as the index stores it for delivery. The index holds what Submit checked,
// so it parses; when it no longer does (an edited database, a parser grown stricter), the result is the
// permanent failure the recipient gets without an attempt, naming what is wrong, rather than a retry until
// the message expires.
func parseStored(rcpt string, hostErr, pathErr error) (address.Address, *Result) {
	a, err := address.ParseAddress(rcpt)
	switch {
	case err != nil:
		return a, &Result{Outcome: Failed, Code: 553, Enhanced: "5.1.3", Text: "stored recipient address does not parse: " + err.Error()}
	case hostErr != nil:
		return a, &Result{Outcome: Failed, Code: 553, Enhanced: "5.1.2", Text: "stored recipient domain does not parse: " + hostErr.Error()}
	case pathErr != nil:
		return a, &Result{Outcome: Failed, Code: 553, Enhanced: "5.1.7", Text: "stored sender address does not parse: " + pathErr.Error()}
	}
	return a, nil
}

// opener opens message id's body for delivery by batch w, verified against sum while it is read.
func (q *Queue) opener(w *work, id string, sum []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return q.openVerified(id, sum, func(reason string) { w.badRead(id, reason) })
	}
}

func (q *Queue) worker(ctx context.Context, w *work) {
	defer q.workers.Done()
	s := newSettler(q, w)
	var results []Result
	var panicked bool
	if len(w.batch.Jobs) > 0 {
		results, panicked = q.deliver(ctx, w)
	}
	missing := "no result from delivery"
	if panicked {
		missing = "internal error during delivery"
	}
	s.finish(results, missing)
	q.release(w)
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

// release ends batch w once all its results are recorded (its recipients still queued are back in the
// index already): its slot is freed.
func (q *Queue) release(w *work) {
	q.mu.Lock()
	q.busy--
	q.ix.done(w.domain)
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
	// delayNotice: this deferral gets the recipient's one delay notice (delaynotice.go).
	delayNotice bool
}

// updateRecipient writes c and its attempt history; it reports false when the recipient was no longer
// queued.
func (q *Queue) updateRecipient(ctx context.Context, tx *sql.Tx, c *change, now time.Time) (bool, error) {
	r := c.res
	next := c.next
	if next.IsZero() {
		next = now
	}
	res, err := tx.StmtContext(ctx, q.st.updateRcpt).ExecContext(ctx, c.state, ns(next), r.Code, r.Enhanced, r.Text, r.ResultType, r.RemoteMTA, r.TLS, r.Policy, ns(now),
		c.row.id, stateQueued)
	if err != nil {
		return false, fmt.Errorf("queue: update recipient: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.StmtContext(ctx, q.st.insertAttempt).ExecContext(ctx, c.row.msgID, c.row.rcpt, ns(now), string(r.Outcome), r.Code, r.Enhanced, r.Text, r.RemoteMTA, r.TLS,
		r.Policy, r.ResultType); err != nil {
		return false, fmt.Errorf("queue: record attempt: %w", err)
	}
	return true, nil
}

// finishIfDone deletes message id's index rows when no recipient is queued any more; the caller removes the
// body after the commit. A crash in between leaves a body without index rows, which Open moves to the
// quarantine directory.
func (q *Queue) finishIfDone(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var n int
	if err := tx.StmtContext(ctx, q.st.countLive).QueryRowContext(ctx, id, stateQueued, stateQuarantined).Scan(&n); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	if n > 0 {
		return false, nil
	}
	if err := q.archive(ctx, tx, id, q.now()); err != nil {
		return false, err
	}
	if err := q.forgetDelayNotices(ctx, tx, id); err != nil {
		return false, err
	}
	if _, err := tx.StmtContext(ctx, q.st.deleteAttempts).ExecContext(ctx, id); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	if _, err := tx.StmtContext(ctx, q.st.deleteMsg).ExecContext(ctx, id); err != nil {
		return false, fmt.Errorf("queue: finish %s: %w", id, err)
	}
	return true, nil
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
	if rt := string(r.ResultType); rt != "" && !strings.Contains(s, rt) {
		s += " (" + rt + ")"
	}
	return s
}
