package admintest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
)

// selected returns the messages s selects, as *queue.Queue documents it.
func (q *Queue) selected(a queue.Action, s queue.Selection) (queue.BulkResult, error) {
	if _, err := queue.ParseAction(string(a)); err != nil {
		return queue.BulkResult{}, err
	}
	if err := s.Check(); err != nil {
		return queue.BulkResult{}, err
	}
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	res := queue.BulkResult{Action: a}
	for _, m := range q.msgs {
		if m.Queued+m.Quarantined == 0 || s.Held && !m.Held ||
			s.OlderThan > 0 && !m.Received.Before(now().Add(-s.OlderThan)) {
			continue
		}
		if s.Domain != "" && !slices.ContainsFunc(m.Rcpts, func(r queue.RecipientInfo) bool {
			return r.Domain == s.Domain && (r.State == "queued" || r.State == "quarantined")
		}) {
			continue
		}
		if s.ResultType != "" && !slices.ContainsFunc(m.Rcpts, func(r queue.RecipientInfo) bool {
			return r.State == "queued" && r.LastResultType == s.ResultType
		}) {
			continue
		}
		res.Matched++
		if e := a.Preview(m.MessageInfo); e.Skip == "" {
			res.Affected++
			res.Recipients += e.Rcpts
			res.IDs = append(res.IDs, m.ID)
		}
	}
	return res, nil
}

// PreviewBulk implements admin.QueueAPI.
func (q *Queue) PreviewBulk(ctx context.Context, a queue.Action, s queue.Selection) (queue.BulkResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.Err != nil {
		return queue.BulkResult{}, q.Err
	}
	return q.selected(a, s)
}

// Bulk implements admin.QueueAPI: the single-message operations on every selected message, recorded in
// Calls as they are.
func (q *Queue) Bulk(ctx context.Context, a queue.Action, s queue.Selection) (queue.BulkResult, error) {
	q.mu.Lock()
	if q.Err != nil {
		q.mu.Unlock()
		return queue.BulkResult{}, q.Err
	}
	res, err := q.selected(a, s)
	q.mu.Unlock()
	if err != nil {
		return res, err
	}
	if s.Max > 0 && res.Affected > s.Max {
		return res, fmt.Errorf("%w: %d messages would be affected, %d were confirmed", queue.ErrSelectionGrew, res.Affected, s.Max)
	}
	for _, id := range res.IDs {
		if err := a.Do(ctx, q, id); err != nil {
			return res, err
		}
	}
	return res, nil
}
