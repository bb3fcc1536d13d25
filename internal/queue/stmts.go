package queue

import (
	"context"
	"database/sql"
	"fmt"
)

// stmts are the statements of the hot paths (Submit, dispatch, apply), prepared once per Queue: parsing
// SQL on every call was a sixth of the CPU under load. Transactions use them through tx.StmtContext,
// which reuses the statement already prepared on the connection.
type stmts struct {
	insertMsg, insertRcpt                *sql.Stmt
	loadRcpt, bumpMsg, bumpRcpt          *sql.Stmt
	updateRcpt, insertAttempt            *sql.Stmt
	countLive, deleteAttempts, deleteMsg *sql.Stmt
	forgetDelayNotices                   *sql.Stmt
}

func (q *Queue) prepare(ctx context.Context) error {
	for _, s := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&q.st.insertMsg, `INSERT INTO queue_messages
			(id, sender, envid, ret, flags, client_ip, size, body_sum, received, expires)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&q.st.insertRcpt, `INSERT INTO queue_recipients
			(msg_id, rcpt, domain, notify, orcpt, state, next_attempt, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&q.st.loadRcpt, `SELECT r.msg_id, r.rcpt, r.notify, r.orcpt, r.attempts, r.state, r.next_attempt,
			m.sender, m.envid, m.ret, m.flags, m.size, m.received, m.expires, m.attempts, m.held, m.body_sum
			FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id WHERE r.id = ?`},
		{&q.st.bumpMsg, `UPDATE queue_messages SET attempts = attempts + 1 WHERE id = ?`},
		{&q.st.bumpRcpt, `UPDATE queue_recipients SET inflight = 1, next_attempt = ?, updated = ? WHERE id = ?`},
		{&q.st.updateRcpt, `UPDATE queue_recipients SET state = ?, next_attempt = ?, attempts = attempts + 1,
			inflight = 0, interrupted = 0, last_code = ?,
			last_enhanced = ?, last_text = ?, last_result_type = ?, last_remote_mta = ?, last_tls = ?,
			last_policy = ?, updated = ? WHERE id = ? AND state = ?`},
		{&q.st.insertAttempt, `INSERT INTO queue_attempts(msg_id, rcpt, at, outcome, code, enhanced, text,
			remote_mta, tls, policy, result_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&q.st.countLive, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND state IN (?, ?)`},
		{&q.st.deleteAttempts, `DELETE FROM queue_attempts WHERE msg_id = ?`},
		{&q.st.deleteMsg, `DELETE FROM queue_messages WHERE id = ?`},
		{&q.st.forgetDelayNotices, `DELETE FROM delay_notices WHERE msg_id = ?`},
	} {
		st, err := q.db.PrepareContext(ctx, s.query)
		if err != nil {
			q.st.close()
			return fmt.Errorf("queue: prepare: %w", err)
		}
		*s.dst = st
	}
	return nil
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.insertMsg, s.insertRcpt, s.loadRcpt, s.bumpMsg, s.bumpRcpt, s.updateRcpt,
		s.insertAttempt, s.countLive, s.deleteAttempts, s.deleteMsg, s.forgetDelayNotices} {
		if st != nil {
			st.Close()
		}
	}
}
