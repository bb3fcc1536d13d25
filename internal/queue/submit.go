package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

// record is one message as it goes into the index.
type record struct {
	id      string
	env     Envelope
	domains []string // per recipient
	rcptIDs []int64  // per recipient, once inserted
	size    int64
	sum     []byte // SHA-256 of the body
	// flushEpoch is Queue.failedFlushes when the body's file was opened, before its first write (GroupSync).
	flushEpoch uint64
	received   time.Time
	expires    time.Time
}

// pending is a Submit waiting for the group committer.
type pending struct {
	rec  *record
	done chan error
}

// Submit stores a message durably and returns its id. It returns only after the body and the index rows are
// on disk (RFC 5321 Section 6.1: the caller may then answer 250): the body file is fsynced and renamed into
// the spool here, then the committer fsyncs the spool directory (once for its whole group, covering this
// rename) and commits the index rows. With GroupSync the body is not fsynced here: the committer's one
// file-system flush for the group covers its content and its rename, and it is refused if any flush failed
// while it was being written (see dropLost). Errors wrap ErrInvalid for an unusable envelope or
// empty body, or ErrTemporary (and ErrNoSpace on ENOSPC) for local failures; in both cases the queue holds
// nothing of the message.
func (q *Queue) Submit(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	rec, err := q.newRecord(env)
	if err != nil {
		return "", err
	}
	if err := q.space.admit(); err != nil {
		return "", err
	}
	when := syncBodyNow
	if q.opts.GroupSync {
		when = syncBodyWithGroup
	}
	if err := q.writeBody(rec, body, when); err != nil {
		return "", err
	}
	if err := q.commitIndex(ctx, rec); err != nil {
		os.Remove(q.bodyPath(rec.id))
		return "", err
	}
	return rec.id, nil
}

// newRecord checks env and prepares its index record.
func (q *Queue) newRecord(env Envelope) (*record, error) {
	if len(env.Recipients) == 0 {
		return nil, fmt.Errorf("%w: no recipients", ErrInvalid)
	}
	if from, ok := env.From.Mailbox(); ok {
		if err := from.Check(); err != nil {
			return nil, fmt.Errorf("%w: sender: %w", ErrInvalid, err)
		}
	}
	switch env.Ret {
	case "", "FULL", "HDRS":
	default:
		return nil, fmt.Errorf("%w: RET %q", ErrInvalid, env.Ret)
	}
	now := q.now()
	id, err := newID(now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemporary, err)
	}
	life := q.opts.MaxLifetime
	if env.DSN {
		life = q.opts.DSNMaxLifetime
	}
	rec := &record{id: id, received: now, expires: now.Add(life)}
	rec.env = env
	rec.env.Recipients = nil
	seen := map[address.Address]bool{}
	for _, r := range env.Recipients {
		if seen[r.Addr] {
			continue // RCPT given twice: deliver once
		}
		seen[r.Addr] = true
		// The index stores the text, and delivery reads it back.
		if err := r.Addr.Check(); err != nil {
			return nil, fmt.Errorf("%w: recipient: %w", ErrInvalid, err)
		}
		rec.env.Recipients = append(rec.env.Recipients, r)
		rec.domains = append(rec.domains, r.Addr.Host().String())
	}
	return rec, nil
}

// commitIndex hands rec to the group committer and waits for its transaction.
func (q *Queue) commitIndex(ctx context.Context, rec *record) error {
	p := &pending{rec: rec, done: make(chan error, 1)}
	select {
	case q.commitCh <- p:
	case <-q.committerDone:
		return fmt.Errorf("%w: %w", ErrTemporary, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrTemporary, ctx.Err())
	}
	// Once handed over, wait for the answer even if ctx ends: the row may be committed, and the body file
	// must then stay.
	return <-p.done
}

// committer is the group-commit goroutine: it takes the first waiting Submit, collects more for up to
// GroupCommitWindow (or GroupCommitMax of them), fsyncs the spool directory once for all their renames,
// commits their index rows in one transaction, and answers them all. The cost of both fsyncs is shared by
// every Submit in the group. The committed recipients then enter the scheduler's index, with one Kick for
// the group.
func (q *Queue) committer() {
	defer close(q.committerDone)
	for {
		var group []*pending
		select {
		case p := <-q.commitCh:
			group = append(group, p)
		case <-q.stopCommitter:
			return
		}
		group = q.collect(group)
		// The writes and renames of every body in the group happened before it was handed over. Never retry
		// a failed fsync (the data or the entries may already be lost): the whole group is refused instead.
		if err := q.syncGroup(); err != nil {
			if q.spoolFS != nil {
				q.failedFlushes.Add(1)
			}
			for _, p := range group {
				p.done <- err
			}
			continue
		}
		if group = q.dropLost(group); len(group) == 0 {
			continue
		}
		err := q.commitGroup(group)
		if errors.Is(err, ErrNoSpace) {
			q.space.indexFull(err)
		}
		if err != nil && len(group) > 1 {
			// One bad record must not fail its neighbours: commit each alone.
			for _, p := range group {
				err := q.commitGroup([]*pending{p})
				if err == nil {
					q.indexRecords(p.rec)
				}
				p.done <- err
			}
			q.Kick()
			continue
		}
		if err == nil {
			q.space.check()
			recs := make([]*record, len(group))
			for i, p := range group {
				recs[i] = p.rec
			}
			q.indexRecords(recs...)
			q.Kick()
		}
		for _, p := range group {
			p.done <- err
		}
	}
}

// syncGroup makes the bodies of a group durable before its commit: one flush of the spool's file system with
// GroupSync (their content and names), else one fsync of the spool directory (their names; Submit fsynced
// each content).
func (q *Queue) syncGroup() error {
	if q.spoolFS != nil {
		if err := q.opts.SyncFS(q.spoolFS); err != nil {
			return storageErr("flush spool file system (syncfs)", err)
		}
		return nil
	}
	if err := q.opts.SyncDir(q.opts.Dir); err != nil {
		return storageErr("fsync spool directory", err)
	}
	return nil
}

// dropLost answers, after a successful GroupSync flush, the Submits whose body was being written while an
// earlier flush failed, with an error, and returns the rest of the group.
//
// syncfs does not say whose pages it failed to write back. Linux keeps one write-back error per file system
// and reports it once to each descriptor syncfs is called on, and every group flushes through the same
// spool descriptor. So a body's pages may fail to write back (in the background, or in another group's
// flush) while the body is still being received: the other group is told and refused, and this body's own
// group then flushes with success although its pages are gone. Any body whose file was open when a flush
// failed may be the one lost; those bodies are refused too (451: the clients send them again). A body opened
// after the failed flush returned was not yet written when the error happened. The cost is a counter: no
// system call per body.
func (q *Queue) dropLost(group []*pending) []*pending {
	epoch := q.failedFlushes.Load()
	kept := group[:0]
	for _, p := range group {
		if q.spoolFS != nil && p.rec.flushEpoch != epoch {
			p.done <- storageErr("flush spool file system (syncfs)",
				errors.New("an earlier flush failed while this body was being written: its write-back may have failed"))
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// indexRecords puts the recipients of committed records into the scheduler's index.
func (q *Queue) indexRecords(recs ...*record) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, rec := range recs {
		for i, id := range rec.rcptIDs {
			q.ix.add(id, rec.id, rec.domains[i], ns(rec.received))
		}
	}
}

func (q *Queue) collect(group []*pending) []*pending {
	if q.opts.GroupCommitWindow < 0 {
		for len(group) < q.opts.GroupCommitMax {
			select {
			case p := <-q.commitCh:
				group = append(group, p)
			default:
				return group
			}
		}
		return group
	}
	t := time.NewTimer(q.opts.GroupCommitWindow)
	defer t.Stop()
	for len(group) < q.opts.GroupCommitMax {
		select {
		case p := <-q.commitCh:
			group = append(group, p)
		case <-t.C:
			return group
		}
	}
	return group
}

func (q *Queue) commitGroup(group []*pending) error {
	ctx := context.Background() // a Submit's own ctx must not abort its neighbours' transaction
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return storageErr("begin index transaction", err)
	}
	for _, p := range group {
		if err := q.insertRecord(ctx, tx, p.rec); err != nil {
			tx.Rollback()
			return storageErr("index message", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return storageErr("commit index", err)
	}
	q.commits.Add(1)
	return nil
}

// insertRecord inserts rec's index rows in tx and sets rec.rcptIDs.
func (q *Queue) insertRecord(ctx context.Context, tx *sql.Tx, rec *record) error {
	e := rec.env
	if _, err := tx.StmtContext(ctx, q.st.insertMsg).ExecContext(ctx,
		rec.id, e.From.String(), e.EnvID, e.Ret, envFlags(e), e.ClientIP, rec.size, rec.sum, ns(rec.received), ns(rec.expires)); err != nil {
		return err
	}
	ins := tx.StmtContext(ctx, q.st.insertRcpt)
	rec.rcptIDs = rec.rcptIDs[:0]
	for i, r := range e.Recipients {
		res, err := ins.ExecContext(ctx, rec.id, r.Addr.String(), rec.domains[i], strings.Join(r.Notify, ","), r.ORcpt,
			stateQueued, ns(rec.received), ns(rec.received))
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		rec.rcptIDs = append(rec.rcptIDs, id)
	}
	return nil
}

func splitNotify(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
