package queue

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

// record is one message as it goes into the index.
type record struct {
	id       string
	env      Envelope
	domains  []string // per recipient
	size     int64
	received time.Time
	expires  time.Time
}

// pending is a Submit waiting for the group committer.
type pending struct {
	rec  *record
	done chan error
}

// Submit stores a message durably and returns its id. It returns only after the body and the index rows are
// on disk (RFC 5321 Section 6.1: the caller may then answer 250). Errors wrap ErrInvalid for an unusable
// envelope or empty body, or ErrTemporary (and ErrNoSpace on ENOSPC) for local failures; in both cases the
// queue holds nothing of the message.
func (q *Queue) Submit(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	rec, err := q.newRecord(env)
	if err != nil {
		return "", err
	}
	size, err := q.writeBody(rec.id, body)
	if err != nil {
		return "", err
	}
	rec.size = size
	if err := q.commitIndex(ctx, rec); err != nil {
		os.Remove(q.bodyPath(rec.id))
		return "", err
	}
	q.Kick()
	return rec.id, nil
}

// newRecord checks env and prepares its index record.
func (q *Queue) newRecord(env Envelope) (*record, error) {
	if len(env.Recipients) == 0 {
		return nil, fmt.Errorf("%w: no recipients", ErrInvalid)
	}
	if env.From != "" {
		if _, err := address.ParseAddress(env.From); err != nil {
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
	seen := map[string]bool{}
	for _, r := range env.Recipients {
		if seen[r.Addr] {
			continue // RCPT given twice: deliver once
		}
		seen[r.Addr] = true
		a, err := address.ParseAddress(r.Addr)
		if err != nil {
			return nil, fmt.Errorf("%w: recipient: %w", ErrInvalid, err)
		}
		dom := a.Domain.String()
		if a.Literal.IsValid() {
			dom = "[" + a.Literal.String() + "]"
		}
		rec.env.Recipients = append(rec.env.Recipients, r)
		rec.domains = append(rec.domains, dom)
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
// GroupCommitWindow (or GroupCommitMax of them), commits them in one transaction, and answers them all.
// The cost of the commit's fsync is shared by every Submit in the group.
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
		err := q.commitGroup(group)
		if err != nil && len(group) > 1 {
			// One bad record must not fail its neighbours: commit each alone.
			for _, p := range group {
				p.done <- q.commitGroup([]*pending{p})
			}
			continue
		}
		for _, p := range group {
			p.done <- err
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
		if err := insertRecord(ctx, tx, p.rec); err != nil {
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

func insertRecord(ctx context.Context, tx *sql.Tx, rec *record) error {
	e := rec.env
	if _, err := tx.ExecContext(ctx, `INSERT INTO queue_messages
		(id, sender, envid, ret, flags, client_ip, size, received, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.id, e.From, e.EnvID, e.Ret, envFlags(e), e.ClientIP, rec.size, ns(rec.received), ns(rec.expires)); err != nil {
		return err
	}
	for i, r := range e.Recipients {
		if _, err := tx.ExecContext(ctx, `INSERT INTO queue_recipients
			(msg_id, rcpt, domain, notify, orcpt, state, next_attempt, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.id, r.Addr, rec.domains[i], strings.Join(r.Notify, ","), r.ORcpt, stateQueued,
			ns(rec.received), ns(rec.received)); err != nil {
			return err
		}
	}
	return nil
}

func splitNotify(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
