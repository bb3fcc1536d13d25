package queue

import "time"

// Settled is a recipient that reached a final state (delivered, or failed and bounced), told once its state
// is committed: for metrics, and for whoever waits for a record.
type Settled struct {
	MsgID, Rcpt string
	// Outcome is Delivered or Failed.
	Outcome Outcome
	// Delay is the time from the message's arrival to this final attempt.
	Delay time.Duration
}

// settled tells Options.OnSettled about the recipients of f that reached a final state, once their state is
// committed.
func (q *Queue) settled(f *finished) {
	if q.opts.OnSettled == nil {
		return
	}
	for _, c := range f.changes {
		var out Outcome
		switch c.state {
		case stateDelivered:
			out = Delivered
		case stateFailed:
			out = Failed
		default:
			continue
		}
		q.opts.OnSettled(Settled{MsgID: c.row.msgID, Rcpt: c.row.rcpt, Outcome: out, Delay: q.delay(f.w, c.row)})
	}
}

// delay is how long the message of row has been in the queue at the time of its latest attempt.
func (q *Queue) delay(w *work, row *rcptRow) time.Duration {
	m, ok := w.msgs[row.msgID]
	if !ok {
		return 0
	}
	return max(q.now().Sub(m.received), 0)
}
