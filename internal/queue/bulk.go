package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Destructive reports whether the action loses mail or sends bounces, so that acting on many messages at
// once must be confirmed.
func (a Action) Destructive() bool { return a == ActionDelete || a == ActionBounce }

// Errors of bulk actions.
var (
	// ErrBadSelection: the selection is empty, or both All and a filter are set.
	ErrBadSelection = errors.New("queue: bad selection")
	// ErrSelectionGrew: more messages match than the caller confirmed (Selection.Max).
	ErrSelectionGrew = errors.New("queue: more messages match than were confirmed")
)

// Selection picks the messages of a bulk action. Either All is set, or at least one filter; filters combine
// with AND. Only messages still in the queue are selected: every one of them has a recipient left to
// deliver or one in quarantine.
type Selection struct {
	// All selects every message. It cannot be combined with a filter, so that an empty filter never
	// means "everything" by accident.
	All bool
	// Domain selects messages with a queued or quarantined recipient in this domain (A-labels).
	Domain string
	// ResultType selects messages with a queued recipient whose last attempt failed with this RFC 8460
	// result type (certificate-expired, sts-policy-fetch-error, ...).
	ResultType tlsrpt.ResultType
	// Held selects held messages only.
	Held bool
	// OlderThan selects messages received longer ago than this.
	OlderThan time.Duration
	// Max, when positive, makes the action refuse (ErrSelectionGrew) when more messages would be acted on:
	// the count an operator confirmed after a preview.
	Max int
}

func (s Selection) filtered() bool {
	return s.Domain != "" || s.ResultType != "" || s.Held || s.OlderThan != 0
}

// Check reports what is wrong with the selection, naming the field.
func (s Selection) Check() error {
	switch {
	case s.All && s.filtered():
		return fmt.Errorf("%w: all selects every message and cannot be combined with a filter", ErrBadSelection)
	case !s.All && !s.filtered():
		return fmt.Errorf("%w: give all, or at least one filter (domain, result type, held, older than)", ErrBadSelection)
	case s.OlderThan < 0:
		return fmt.Errorf("%w: older than must not be negative, got %s", ErrBadSelection, s.OlderThan)
	case s.Max < 0:
		return fmt.Errorf("%w: max must not be negative, got %d", ErrBadSelection, s.Max)
	}
	return nil
}

// BulkResult is what a bulk action did, or would do for Preview.
type BulkResult struct {
	Action Action
	// Matched counts the messages the selection matches; Affected those the action changes, as
	// Action.Preview says (retry skips held messages, hold held ones, release all but held ones).
	Matched, Affected int
	// Recipients counts the recipients of the affected messages that the action changes (Action.Preview).
	Recipients int
	// IDs are the affected messages, oldest first.
	IDs []string
	// Gone counts messages that left the queue (delivered, expired, acted on by someone else) between the
	// selection and the action.
	Gone int
	// InFlight counts messages left alone because a delivery attempt of theirs was in flight
	// (ErrInFlight); select them again once it is recorded.
	InFlight int
}

// candidate is one matched message with what the actions need to know of it.
type candidate struct {
	id string
	// info carries Held and the recipient counts by state.
	info MessageInfo
}

func (q *Queue) selectMessages(ctx context.Context, s Selection) ([]candidate, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	held := 0
	if s.Held {
		held = 1
	}
	var cutoff int64
	if s.OlderThan > 0 {
		cutoff = ns(q.now().Add(-s.OlderThan))
	}
	domain := strings.ToLower(strings.TrimSuffix(s.Domain, "."))
	rows, err := q.db.QueryContext(ctx, `SELECT m.id, m.held,
		SUM(r.state = 'queued'), SUM(r.state = 'quarantined'), COUNT(*)
		FROM queue_messages m JOIN queue_recipients r ON r.msg_id = m.id
		WHERE (? = 0 OR m.held = 1) AND (? = 0 OR m.received < ?)
		AND (? = '' OR EXISTS (SELECT 1 FROM queue_recipients r2 WHERE r2.msg_id = m.id AND r2.domain = ?
			AND r2.state IN ('queued', 'quarantined')))
		AND (? = '' OR EXISTS (SELECT 1 FROM queue_recipients r3 WHERE r3.msg_id = m.id AND r3.state = 'queued'
			AND r3.last_result_type = ?))
		GROUP BY m.id
		HAVING SUM(r.state IN ('queued', 'quarantined')) > 0
		ORDER BY m.received, m.id`,
		held, cutoff, cutoff, domain, domain, s.ResultType, s.ResultType)
	if err != nil {
		return nil, fmt.Errorf("queue: select: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var h, total int
		if err := rows.Scan(&c.id, &h, &c.info.Queued, &c.info.Quarantined, &total); err != nil {
			return nil, fmt.Errorf("queue: select: %w", err)
		}
		c.info.Held = h != 0
		// Delivered stands for every recipient that is neither queued nor quarantined.
		c.info.Delivered = total - c.info.Queued - c.info.Quarantined
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: select: %w", err)
	}
	return out, nil
}

func (q *Queue) plan(ctx context.Context, a Action, s Selection) (BulkResult, error) {
	if _, err := ParseAction(string(a)); err != nil {
		return BulkResult{}, err
	}
	cs, err := q.selectMessages(ctx, s)
	if err != nil {
		return BulkResult{}, err
	}
	res := BulkResult{Action: a, Matched: len(cs)}
	for _, c := range cs {
		if e := a.Preview(c.info); e.Skip == "" {
			res.Affected++
			res.Recipients += e.Rcpts
			res.IDs = append(res.IDs, c.id)
		}
	}
	return res, nil
}

// PreviewBulk says what Bulk would do with the same arguments now, changing nothing.
func (q *Queue) PreviewBulk(ctx context.Context, a Action, s Selection) (BulkResult, error) {
	return q.plan(ctx, a, s)
}

// Bulk applies action a to every message s selects, one message at a time with the same code as the
// single-message actions (so a bounce sends the DSNs NOTIFY asks for). With s.Max set it first refuses, with
// ErrSelectionGrew and nothing changed, when more messages would be affected than that. A message that left
// the queue meanwhile is counted in Gone. On another error it stops and returns what was done so far.
func (q *Queue) Bulk(ctx context.Context, a Action, s Selection) (BulkResult, error) {
	res, err := q.plan(ctx, a, s)
	if err != nil {
		return res, err
	}
	if s.Max > 0 && res.Affected > s.Max {
		return res, fmt.Errorf("%w: %d messages would be affected, %d were confirmed", ErrSelectionGrew, res.Affected, s.Max)
	}
	ids := res.IDs
	res.IDs = res.IDs[:0:0]
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			res.Affected = len(res.IDs)
			return res, fmt.Errorf("queue: bulk %s stopped after %d messages: %w", a, len(res.IDs), err)
		}
		if err := a.Do(ctx, q, id); err != nil {
			if errors.Is(err, ErrNotFound) {
				res.Gone++
				continue
			}
			if errors.Is(err, ErrInFlight) {
				res.InFlight++
				continue
			}
			res.Affected = len(res.IDs)
			return res, fmt.Errorf("queue: bulk %s stopped after %d messages: %w", a, len(res.IDs), err)
		}
		res.IDs = append(res.IDs, id)
	}
	res.Affected = len(res.IDs)
	q.log.Info("queue: bulk action by administrator", "action", string(a), "matched", res.Matched,
		"affected", res.Affected, "gone", res.Gone, "in_flight", res.InFlight)
	return res, nil
}
