package queue

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

// Recording results (RFC 5321 Section 6.1: a message the receiver accepted must not be sent again, as far
// as a crash allows). Each message's results are recorded as soon as every recipient of it in the batch
// has one, not when the whole batch is done: the Deliverer reports each result through Job.Settled the
// moment the reply arrives, and the message goes to the recorder, which commits the messages of every
// worker that finished meanwhile in one transaction (group commit, like the Submit committer). A crash
// then repeats only the messages whose 250 arrived within one commit of the crash, instead of every
// message of the batches in flight. The batch's slot is freed (and its deferred recipients go back into
// the scheduler's index) when the whole batch is recorded, so batches keep their size.

// finished is the results of one message in a batch, being recorded.
type finished struct {
	w       *work
	msgID   string
	changes []*change

	// Set by applyBatch.
	dsns    []*record
	doneIDs []string // finished messages whose bodies go after the commit
	corrupt string   // the body failed verification: quarantined instead of recorded
	// journaled counts its recipients written to the delivery journal, by journal generation.
	journaled journalCount
	queued    []*change // recipients that stay queued, once committed
	requeue   []*rcptRow
	done      chan struct{}
	// retried is set on delivered results whose record failed before (applyFailed).
	retried bool
}

// settler collects the results a Deliverer reports during one batch and hands each message to the
// recorder once all its recipients have one.
type settler struct {
	q *Queue
	w *work

	mu      sync.Mutex
	results map[string][]Result // by message id
	left    map[string]int      // recipients of the message still without a result
	handed  map[string]*finished
	order   []*finished
	// journaled counts, per message, the recipients written to the delivery journal.
	journaled map[string]journalCount
}

func newSettler(q *Queue, w *work) *settler {
	s := &settler{q: q, w: w, results: map[string][]Result{}, left: map[string]int{}, handed: map[string]*finished{},
		journaled: map[string]journalCount{}}
	for _, r := range w.rcpts {
		if r.bad == nil { // not delivered: its result is r.bad
			s.left[r.msgID]++
		}
	}
	for i := range w.batch.Jobs {
		w.batch.Jobs[i].Settled = s.settled
	}
	return s
}

// settled is Job.Settled: it notes r and records its message once complete.
func (s *settler) settled(r Result) {
	s.mu.Lock()
	if _, ok := s.left[r.MsgID]; !ok || s.handed[r.MsgID] != nil {
		s.mu.Unlock()
		return
	}
	for _, x := range s.results[r.MsgID] {
		if x.Rcpt == r.Rcpt {
			s.mu.Unlock()
			return // reported twice: the first counts
		}
	}
	s.results[r.MsgID] = append(s.results[r.MsgID], r)
	s.left[r.MsgID]--
	if r.Outcome == Delivered {
		s.journal(r)
	}
	var f *finished
	if s.left[r.MsgID] == 0 {
		f = s.hand(r.MsgID, s.results[r.MsgID], "")
	}
	s.mu.Unlock()
	if f != nil {
		s.q.record(f)
	}
}

// journal writes a delivered recipient to the delivery journal at once, unless its success needs a
// "relayed" DSN (only the index records that). s.mu is held.
func (s *settler) journal(r Result) {
	for _, row := range s.w.rcpts {
		if row.msgID != r.MsgID || row.addr != r.Rcpt {
			continue
		}
		if !r.NextHopDSN && slices.Contains(row.notify, "SUCCESS") {
			return
		}
		if gen, ok := s.q.journalDelivered(row.msgID, row.id); ok {
			if s.journaled[r.MsgID] == nil {
				s.journaled[r.MsgID] = journalCount{}
			}
			s.journaled[r.MsgID][gen]++
		}
		return
	}
}

// hand builds the finished message msgID from its results. s.mu is held.
func (s *settler) hand(msgID string, results []Result, missing string) *finished {
	var rows []*rcptRow
	for _, r := range s.w.rcpts {
		if r.msgID == msgID {
			rows = append(rows, r)
		}
	}
	f := &finished{w: s.w, msgID: msgID, changes: s.q.changes(s.w, rows, results, missing), done: make(chan struct{}),
		journaled: s.journaled[msgID]}
	s.handed[msgID] = f
	s.order = append(s.order, f)
	return f
}

// finish records the messages not recorded yet with the results Deliver returned (a recipient without a
// result is deferred with the text missing) and waits until every message of the batch is recorded.
func (s *settler) finish(results []Result, missing string) {
	byMsg := map[string][]Result{}
	for _, r := range results {
		byMsg[r.MsgID] = append(byMsg[r.MsgID], r)
	}
	var late []*finished
	s.mu.Lock()
	seen := map[string]bool{}
	for _, r := range s.w.rcpts {
		if seen[r.msgID] || s.handed[r.msgID] != nil {
			continue
		}
		seen[r.msgID] = true
		late = append(late, s.hand(r.msgID, append(s.results[r.msgID], byMsg[r.msgID]...), missing))
	}
	order := s.order
	s.mu.Unlock()
	for _, f := range late {
		s.q.record(f)
	}
	for _, f := range order {
		<-f.done
	}
}

// recordWindow is how long the recorder collects finished messages before it records them together.
const recordWindow = 5 * time.Millisecond

// recordRetryInterval is how soon the recorder tries again to record delivered results whose transaction
// failed (SQLITE_BUSY, a full disk); the wait doubles after each failed try, up to recordRetryMax.
const (
	recordRetryInterval = time.Second
	recordRetryMax      = 30 * time.Second
)

// record hands f to the recorder goroutine; f.done is closed once it is recorded (or could not be).
func (q *Queue) record(f *finished) {
	select {
	case q.recordCh <- f:
	case <-q.recorderDone:
		// Cannot happen while workers run (Close waits for them); leave everything where dispatch put it.
		q.applyFailed(f, ErrClosed)
		q.mu.Lock()
		for _, r := range f.requeue {
			q.ix.add(r.id, r.msgID, r.domain, ns(r.retryAt))
		}
		q.mu.Unlock()
		close(f.done)
	}
}

// recorder is the goroutine that records results: it takes every finished message waiting, records them
// in one transaction, and then updates the index, queues the DSNs and recycles the finished bodies.
func (q *Queue) recorder() {
	defer close(q.recorderDone)
	wait := recordRetryInterval
	retry := time.NewTimer(wait)
	defer retry.Stop()
	tick := time.NewTicker(spaceCheckInterval)
	defer tick.Stop()
	for {
		var group []*finished
		select {
		case f := <-q.recordCh:
			group = append(group, f)
		case <-tick.C:
			q.space.check()
			continue
		case <-retry.C:
			if again := q.takeUnrecorded(); len(again) > 0 {
				q.applyGroup(again)
				if q.Unrecorded() > 0 {
					wait = min(2*wait, recordRetryMax)
				} else {
					wait = recordRetryInterval
				}
			}
			retry.Reset(wait)
			continue
		case <-q.stopRecorder:
			// A last try; what still fails is in the journal (replayed at the next start) or in flight
			// (due at once at the next start).
			if again := q.takeUnrecorded(); len(again) > 0 {
				q.applyGroup(again)
			}
			return
		}
		// Collect for a moment: every transaction costs an fsync and its statements, and a crash in the
		// meantime costs no duplicate (delivered recipients are in the journal already).
		t := time.NewTimer(recordWindow)
	more:
		for len(group) < q.opts.GroupCommitMax {
			select {
			case f := <-q.recordCh:
				group = append(group, f)
			case <-t.C:
				break more
			}
		}
		t.Stop()
		q.applyGroup(group)
	}
}

// applyGroup records group in one transaction; when that fails, each message alone, so that one bad
// message does not fail its neighbours.
func (q *Queue) applyGroup(group []*finished) {
	q.orderMu.Lock()
	now := q.now()
	err := q.applyTx(group, now)
	if noSpace(err) {
		// Give the index the reserved room and a checkpointed log before each message is tried alone.
		q.space.indexFull(err)
	}
	recorded := err == nil
	if err != nil && len(group) > 1 {
		for _, f := range group {
			if err := q.applyTx([]*finished{f}, now); err != nil {
				q.applyFailed(f, err)
			} else {
				recorded = true
				q.settled(f)
			}
		}
	} else if err != nil {
		q.applyFailed(group[0], err)
	} else {
		for _, f := range group {
			q.settled(f)
		}
	}
	if recorded {
		q.space.indexOK()
		q.space.check()
	}
	q.pruneArchive(context.Background(), now)
	var dsns []*record
	q.mu.Lock()
	for _, f := range group {
		dsns = append(dsns, f.dsns...)
		// Recipients still queued go back into the index now, under orderMu, so that an administrator's
		// Retry or Hold right after this commit finds them there.
		for _, r := range f.requeue {
			q.ix.add(r.id, r.msgID, r.domain, ns(r.retryAt))
		}
	}
	q.mu.Unlock()
	// A DSN is indexed before the batch's slot is freed, so that RunOnce sees it.
	if len(dsns) > 0 {
		q.indexRecords(dsns...)
		q.Kick()
	}
	q.orderMu.Unlock()
	for _, f := range group {
		if f.corrupt != "" {
			q.quarantined.Add(1)
			if _, err := os.Stat(q.bodyPath(f.msgID)); err == nil {
				if err := q.moveToQuarantine(f.msgID); err != nil {
					q.log.Error("queue: cannot move a corrupt body to quarantine", "msg_id", f.msgID, "err", err)
				}
			}
			q.log.Error("queue: message quarantined", "msg_id", f.msgID, "reason", f.corrupt)
		}
		for _, id := range f.doneIDs {
			q.clearCorrupt(id)
		}
		q.removeBodies(f.doneIDs)
		if err := q.journal.recorded(f.journaled); err != nil {
			q.log.Error("queue: cannot empty the delivery journal", "err", err)
		}
		close(f.done)
	}
}

// applyFailed handles f, of which nothing was recorded. Its recipients without a 250 go back into the
// index at the retry time dispatch gave them. Its delivered recipients do not: they were accepted, and
// a new attempt would deliver them twice. They stay in flight in the database (so that Bounce and Delete
// leave them alone) and their results are kept for the recorder to record again (recordRetryInterval),
// and their journal entries are not counted recorded until that succeeds.
func (q *Queue) applyFailed(f *finished, err error) {
	// Each message is logged when its record first fails; a full disk is logged once more by space.
	level := slog.LevelError
	if f.retried {
		level = slog.LevelDebug
	}
	q.log.Log(context.Background(), level, "queue: cannot record delivery results; delivered recipients are recorded again, the others retried after backoff",
		"domain", f.w.batch.Domain, "msg_id", f.msgID, "err", err)
	f.dsns, f.doneIDs, f.requeue = nil, nil, nil
	var delivered []*change
	for _, c := range f.changes {
		if c.res.Outcome == Delivered {
			delivered = append(delivered, c)
			continue
		}
		f.requeue = append(f.requeue, c.row)
	}
	if len(delivered) == 0 {
		return
	}
	again := &finished{w: f.w, msgID: f.msgID, changes: delivered, journaled: f.journaled, done: make(chan struct{}), retried: true}
	f.journaled = nil
	q.unrecordedMu.Lock()
	q.unrecorded = append(q.unrecorded, again)
	q.unrecordedMu.Unlock()
}

// takeUnrecorded returns the delivered results whose record failed, for the recorder to try again.
func (q *Queue) takeUnrecorded() []*finished {
	q.unrecordedMu.Lock()
	defer q.unrecordedMu.Unlock()
	out := q.unrecorded
	q.unrecorded = nil
	return out
}

// Unrecorded returns the number of messages with delivered recipients whose record failed and is being
// tried again.
func (q *Queue) Unrecorded() int {
	q.unrecordedMu.Lock()
	defer q.unrecordedMu.Unlock()
	return len(q.unrecorded)
}

// applyTx records group in one transaction. On error nothing is recorded and the DSN bodies written for it
// are removed.
func (q *Queue) applyTx(group []*finished, now time.Time) error {
	ctx := context.Background() // results are recorded even while shutting down
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, f := range group {
		if err = q.applyBatch(ctx, tx, f, now); err != nil {
			break
		}
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		tx.Rollback()
		for _, f := range group {
			for _, rec := range f.dsns {
				os.Remove(q.bodyPath(rec.id))
			}
			f.dsns, f.doneIDs, f.queued, f.corrupt = nil, nil, nil, ""
		}
		return err
	}
	for _, f := range group {
		for _, c := range f.queued {
			c.row.retryAt = c.next
			f.requeue = append(f.requeue, c.row)
		}
	}
	return nil
}

// changes classifies the results for rows (recipients of one message in batch w), one change per
// recipient, and logs one delivery event each.
func (q *Queue) changes(w *work, rows []*rcptRow, results []Result, missing string) []*change {
	now := q.now()
	type key struct {
		msgID string
		rcpt  address.Address
	}
	byKey := map[key]Result{}
	for _, r := range results {
		if _, dup := byKey[key{r.MsgID, r.Rcpt}]; !dup {
			byKey[key{r.MsgID, r.Rcpt}] = r
		}
	}
	var changes []*change
	for _, row := range rows {
		m := w.msgs[row.msgID]
		res, ok := byKey[key{row.msgID, row.addr}]
		switch {
		case row.bad != nil:
			res = *row.bad
			res.MsgID, res.Rcpt = row.msgID, row.addr
		case !ok:
			// The Deliverer contract: a recipient without a result is deferred.
			res = Result{MsgID: row.msgID, Rcpt: row.addr, Outcome: Deferred, Text: missing}
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
				c.dsnStatus = expiryStatus(res)
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
		// The one delivery event per recipient per attempt (docs/logs.md), with the keys of STYLE.md.
		level := slog.LevelInfo
		if c.res.Outcome != Delivered {
			level = slog.LevelWarn
		}
		q.log.Log(context.Background(), level, "delivery", "msg_id", row.msgID, "from", m.from, "rcpt", row.rcpt, "domain", row.domain,
			"mx", res.RemoteMTA, "ip", res.IP, "attempt", row.attempts, "tls", res.TLS, "policy", res.Policy,
			"policy_source", res.PolicySource, "sts_mode", res.STSMode, "sts_id", res.STSID,
			"result_type", res.ResultType, "code", res.Code, "enhanced", res.Enhanced,
			"outcome", string(c.res.Outcome), "final_state", c.state, "delay", q.delay(w, row).Seconds(), "text", res.Text)
		changes = append(changes, c)
	}
	return changes
}

// applyBatch records the results of one message of a batch in tx: the attempt counts, recipient states,
// the attempt history, the DSN for failures, and the removal of a finished message. It notes in f the DSN
// queued, the finished message and the recipients that stay queued.
func (q *Queue) applyBatch(ctx context.Context, tx *sql.Tx, f *finished, now time.Time) error {
	// The attempt is counted when its result is recorded, never before it is made: an attempt cut short
	// by a crash does not count (recover).
	if _, err := tx.StmtContext(ctx, q.st.bumpMsg).ExecContext(ctx, f.msgID); err != nil {
		return fmt.Errorf("queue: record attempt: %w", err)
	}
	// Corruption is decided by this batch's own read of the body, never by another batch's.
	reason := f.w.corruptRead(f.msgID)
	var quarantine []*change
	var failed []*change
	for _, c := range f.changes {
		if reason != "" && c.res.Outcome != Delivered && c.res.Outcome != Failed {
			quarantine = append(quarantine, c)
			continue
		}
		applied, err := q.updateRecipient(ctx, tx, c, now)
		if err != nil {
			return err
		}
		if !applied {
			// Bounce and Delete refuse while a recipient is in flight, so this is a clash that must not
			// happen: say so loudly, with the result that is lost.
			q.log.Error("queue: result for a recipient no longer queued ignored", "msg_id", c.row.msgID,
				"rcpt", c.row.rcpt, "outcome", string(c.res.Outcome), "code", c.res.Code)
			continue
		}
		switch {
		case c.state == stateQueued:
			f.queued = append(f.queued, c)
			due, err := q.delayNoticeDue(ctx, tx, f.w.msgs[f.msgID], c, now)
			if err != nil {
				return err
			}
			if due {
				c.delayNotice = true
				failed = append(failed, c)
			}
		case c.state == stateFailed, wantsRelayedDSN(c):
			// Failures, and successes that asked for a notice the next hop cannot give, are reported.
			failed = append(failed, c)
		}
	}
	if reason != "" {
		if err := q.recordCorrupt(ctx, tx, f, quarantine, reason, now); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		rec, err := q.queueDSN(ctx, tx, f.w.msgs[f.msgID], failed, now)
		if err != nil {
			return err
		}
		if rec != nil {
			f.dsns = append(f.dsns, rec)
		}
	}
	fin, err := q.finishIfDone(ctx, tx, f.msgID)
	if err != nil {
		return err
	}
	if fin {
		f.doneIDs = append(f.doneIDs, f.msgID)
	}
	return nil
}

// recordCorrupt quarantines message f.msgID, whose body failed verification during this attempt's read:
// the recipients in rows (those of the attempt without a Delivered or Failed result: nothing was delivered
// to them from that body, since the Deliverer aborted before the final dot) and the recipients that are
// queued and not in flight in another batch. A recipient in flight elsewhere is left to its own batch:
// if that batch verified the body and got a 250, it is recorded as delivered. A Delivered or Failed
// result of this attempt is recorded normally by the caller. The quarantined recipients keep the reason,
// for an administrator to bounce or delete; the body moves to the quarantine directory after the commit.
func (q *Queue) recordCorrupt(ctx context.Context, tx *sql.Tx, f *finished, rows []*change, reason string, now time.Time) error {
	text := "quarantined: " + reason
	var n int64
	for _, c := range rows {
		res, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET state = ?, inflight = 0, updated = ?, last_text = ?
			WHERE id = ? AND state = ?`, stateQuarantined, ns(now), text, c.row.id, stateQueued)
		if err != nil {
			return fmt.Errorf("queue: quarantine %s: %w", f.msgID, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("queue: quarantine %s: %w", f.msgID, err)
		}
		n += k
	}
	res, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET state = ?, updated = ?, last_text = ?
		WHERE msg_id = ? AND state = ? AND inflight = 0`, stateQuarantined, ns(now), text, f.msgID, stateQueued)
	if err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", f.msgID, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", f.msgID, err)
	}
	if n+k == 0 {
		return nil // quarantined already, by another batch of the same message
	}
	// The message is quarantined (counted, logged, its body moved) once, by the first batch that found it.
	res, err = tx.ExecContext(ctx, `INSERT INTO queue_quarantine(msg_id, reason, at) VALUES(?, ?, ?)
		ON CONFLICT(msg_id) DO NOTHING`, f.msgID, reason, ns(now))
	if err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", f.msgID, err)
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return err
	}
	f.corrupt = reason
	return nil
}
