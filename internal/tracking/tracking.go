// Package tracking is message tracking shared by the nodes of a cluster: every node hands the messages it
// finished (delivered, bounced) over to one table in the PostgreSQL database they share, so that mxgate
// trace and the console's Tracking page find a message whichever node handled it.
//
// A node archives a finished message in its own SQLite database in the transaction that removes it from
// the queue (queue.Options.TrackingOutbox records it in an outbox there too): nothing is lost on a crash,
// and the database is never waited for by mail. A Publisher hands the outbox over, in batches, and forgets
// a batch only once PostgreSQL has committed it; a database outage only delays tracking.
package tracking

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/store"
)

// postgresMigrations are the versions of the shared tracking schema; never edit a released one, append.
var postgresMigrations = []string{
	`CREATE TABLE tracking_messages (
		node       TEXT    NOT NULL,
		id         TEXT    NOT NULL,
		message_id TEXT    NOT NULL DEFAULT '', -- lower case, without <>
		message_id_text TEXT NOT NULL DEFAULT '',
		sender     TEXT    NOT NULL,
		size       BIGINT  NOT NULL,
		report     BOOLEAN NOT NULL DEFAULT false,
		dsn        BOOLEAN NOT NULL DEFAULT false,
		client_ip  TEXT    NOT NULL DEFAULT '',
		received   BIGINT  NOT NULL, -- Unix nanoseconds
		finished   BIGINT  NOT NULL,
		recipients TEXT    NOT NULL, -- JSON of []queue.RecipientInfo
		attempts   TEXT    NOT NULL, -- JSON of []queue.Attempt
		PRIMARY KEY (node, id)
	);
	CREATE INDEX tracking_messages_finished ON tracking_messages(finished);
	CREATE INDEX tracking_messages_message_id ON tracking_messages(message_id);
	CREATE INDEX tracking_messages_sender ON tracking_messages(lower(sender));
	CREATE INDEX tracking_messages_id ON tracking_messages(id);
	CREATE TABLE tracking_recipients (
		node TEXT NOT NULL,
		id   TEXT NOT NULL,
		rcpt TEXT NOT NULL, -- lower case
		PRIMARY KEY (node, id, rcpt),
		FOREIGN KEY (node, id) REFERENCES tracking_messages(node, id) ON DELETE CASCADE
	);
	CREATE INDEX tracking_recipients_rcpt ON tracking_recipients(rcpt);`,
}

// Store is the shared tracking table in the cluster's PostgreSQL database.
type Store struct {
	PG *store.PG
}

// Migrate creates or updates the tables.
func (s Store) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "tracking", postgresMigrations)
}

func normMessageID(s string) string { return strings.ToLower(strings.Trim(strings.TrimSpace(s), "<>")) }

// Put stores node's finished messages, replacing any it stored under the same IDs before (a message that
// was retried after a bounce finishes again): putting a batch twice stores it once. It costs three
// statements whatever the batch holds (rows are sent as arrays), so a batch of messages with many
// recipients is not one round trip per recipient.
func (s Store) Put(ctx context.Context, node string, msgs []queue.Traced) error {
	// A message can be in a batch twice (finished, retried, finished again): the last one counts, and a
	// statement may not update one row twice.
	last := map[string]int{}
	for i, m := range msgs {
		last[m.ID] = i
	}
	var (
		ids, mids, midTexts, senders, clientIPs, rcs, ats []string
		sizes, recvs, fins                                []int64
		reports, dsns                                     []bool
		rIDs, rAddrs                                      []string
	)
	for i, m := range msgs {
		if last[m.ID] != i {
			continue
		}
		rc, err := json.Marshal(m.Recipients)
		if err != nil {
			return fmt.Errorf("tracking: %w", err)
		}
		at, err := json.Marshal(m.Attempts)
		if err != nil {
			return fmt.Errorf("tracking: %w", err)
		}
		ids, mids, midTexts, senders = append(ids, m.ID), append(mids, normMessageID(m.MessageID)), append(midTexts, m.MessageID), append(senders, m.From)
		sizes, reports, dsns, clientIPs = append(sizes, m.Size), append(reports, m.Report), append(dsns, m.DSN), append(clientIPs, m.ClientIP)
		recvs, fins, rcs, ats = append(recvs, m.Received.UnixNano()), append(fins, m.Finished.UnixNano()), append(rcs, string(rc)), append(ats, string(at))
		for _, r := range m.Recipients {
			rIDs, rAddrs = append(rIDs, m.ID), append(rAddrs, strings.ToLower(r.Addr))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	tx, err := s.PG.Begin(ctx)
	if err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO tracking_messages (node, id, message_id, message_id_text, sender, size, report,
		dsn, client_ip, received, finished, recipients, attempts)
		SELECT $1::text, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::boolean[],
			$8::boolean[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::text[]) AS u
		ON CONFLICT (node, id) DO UPDATE SET message_id = excluded.message_id, message_id_text = excluded.message_id_text,
		sender = excluded.sender, size = excluded.size, report = excluded.report, dsn = excluded.dsn,
		client_ip = excluded.client_ip, received = excluded.received, finished = excluded.finished,
		recipients = excluded.recipients, attempts = excluded.attempts`,
		node, ids, mids, midTexts, senders, sizes, reports, dsns, clientIPs, recvs, fins, rcs, ats); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM tracking_recipients WHERE node = $1 AND id = ANY($2::text[])`, node, ids); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	if len(rIDs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO tracking_recipients (node, id, rcpt)
			SELECT $1::text, u.* FROM unnest($2::text[], $3::text[]) AS u ON CONFLICT DO NOTHING`, node, rIDs, rAddrs); err != nil {
			return fmt.Errorf("tracking: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("tracking: %w", err)
	}
	return nil
}

// Prune removes at most limit of the messages of every node that finished before cutoff, oldest first, and
// returns how many: a large backlog is pruned in bounded transactions, each committed on its own.
func (s Store) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	tag, err := s.PG.Exec(ctx, `DELETE FROM tracking_messages WHERE (node, id) IN (SELECT node, id FROM tracking_messages
		WHERE finished < $1 ORDER BY finished LIMIT $2)`, cutoff.UnixNano(), limit)
	if err != nil {
		return 0, fmt.Errorf("tracking: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Trace finds the finished messages of every node, newest first, each with its node; the query is that of
// (*queue.Queue).Trace.
func (s Store) Trace(ctx context.Context, tq queue.TraceQuery) ([]queue.Traced, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if tq.Any != "" {
		a := strings.ToLower(strings.Trim(tq.Any, "<>"))
		where = append(where, `(m.id = `+arg(tq.Any)+` OR m.message_id = `+arg(a)+` OR lower(m.sender) = `+arg(a)+`
			OR EXISTS (SELECT 1 FROM tracking_recipients r WHERE r.node = m.node AND r.id = m.id AND r.rcpt = `+arg(a)+`))`)
	}
	if tq.ID != "" {
		where = append(where, `m.id = `+arg(tq.ID))
	}
	if tq.MessageID != "" {
		where = append(where, `m.message_id = `+arg(normMessageID(tq.MessageID)))
	}
	if tq.Sender != "" {
		where = append(where, `lower(m.sender) = `+arg(strings.ToLower(tq.Sender)))
	}
	if tq.Recipient != "" {
		where = append(where, `EXISTS (SELECT 1 FROM tracking_recipients r WHERE r.node = m.node AND r.id = m.id AND r.rcpt = `+
			arg(strings.ToLower(tq.Recipient))+`)`)
	}
	if len(where) == 0 {
		return nil, queue.ErrBadQuery
	}
	limit := tq.Limit
	if limit <= 0 {
		limit = 50
	}
	rows, err := s.PG.Query(ctx, `SELECT m.node, m.id, m.message_id_text, m.sender, m.size, m.report, m.dsn, m.client_ip,
		m.received, m.finished, m.recipients, m.attempts FROM tracking_messages m WHERE `+strings.Join(where, " AND ")+
		` ORDER BY m.finished DESC, m.id, m.node LIMIT `+arg(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("tracking: trace: %w", err)
	}
	defer rows.Close()
	var out []queue.Traced
	for rows.Next() {
		var t queue.Traced
		var recv, fin int64
		var rc, at string
		if err := rows.Scan(&t.Node, &t.ID, &t.MessageID, &t.From, &t.Size, &t.Report, &t.DSN, &t.ClientIP, &recv, &fin, &rc, &at); err != nil {
			return nil, fmt.Errorf("tracking: trace: %w", err)
		}
		t.Received, t.Finished = time.Unix(0, recv), time.Unix(0, fin)
		if err := json.Unmarshal([]byte(rc), &t.Recipients); err != nil {
			return nil, fmt.Errorf("tracking: trace %s of %s: %w", t.ID, t.Node, err)
		}
		if err := json.Unmarshal([]byte(at), &t.Attempts); err != nil {
			return nil, fmt.Errorf("tracking: trace %s of %s: %w", t.ID, t.Node, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracking: trace: %w", err)
	}
	return out, nil
}

// Outbox is the node's side: its queue's tracking outbox.
type Outbox interface {
	Outbox(ctx context.Context, limit int) ([]queue.Archived, error)
	DoneOutbox(ctx context.Context, seq int64) error
	OutboxBacklog(ctx context.Context) (int, time.Time, error)
}

// batchRecipients bounds the recipients of the messages handed over in one transaction.
const batchRecipients = 5000

// maxPruneChunks bounds the transactions of one prune; pruneRetry is how soon a failed prune is tried again.
const (
	maxPruneChunks = 1000
	pruneRetry     = 10 * time.Minute
)

// Publisher hands a node's tracking outbox over to the shared Store.
type Publisher struct {
	Store  Store
	Outbox Outbox
	Node   string
	// Retention is how long the shared table keeps a message (queue.track_retention); 0: kept.
	Retention time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
	// Every is how often the outbox is looked at; Timeout bounds each batch's write.
	Every, Timeout time.Duration
	// Batch is the most messages handed over in one transaction (200 when 0); a batch also holds at most
	// batchRecipients recipients (but always one message), and after a batch timed out the next ones are
	// half as large, growing back once they are handed over.
	Batch int
	// State, when set, is told after each round whether the shared table could be written (nil error) and
	// how many messages wait in the outbox, finished since when.
	State func(err error, waiting int, oldest time.Time)

	// PruneChunk is the most messages pruned from the shared table in one transaction (2000 when 0).
	PruneChunk int
	// PruneState, when set, is told after each prune of the shared table whether it failed.
	PruneState func(err error)

	migrated  bool
	pruneNext time.Time
	limit     int // messages asked of the outbox per batch: Batch, halved after a batch timed out
}

// Run hands the outbox over every Every until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.Every)
	defer t.Stop()
	for {
		err := p.Round(ctx)
		if ctx.Err() != nil {
			return
		}
		if p.State != nil {
			n, oldest, berr := p.Outbox.OutboxBacklog(ctx)
			if berr != nil {
				p.Logger.Error("tracking: cannot read the outbox", "err", berr)
			}
			p.State(err, n, oldest)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round hands everything the outbox holds over, batch by batch, and prunes the shared table once an hour.
// It stops at the first batch that fails, and returns its error; that batch stays in the outbox for the
// next round. A failed prune is told to PruneState, not returned.
func (p *Publisher) Round(ctx context.Context) error {
	batch := p.Batch
	if batch <= 0 {
		batch = 200
	}
	if !p.migrated {
		mctx, cancel := context.WithTimeout(ctx, p.Timeout)
		err := p.Store.Migrate(mctx)
		cancel()
		if err != nil {
			return err
		}
		p.migrated = true
	}
	if p.limit <= 0 || p.limit > batch {
		p.limit = batch
	}
	for {
		msgs, err := p.Outbox.Outbox(ctx, p.limit)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			break
		}
		full := len(msgs) == p.limit
		// Bound the batch by its recipients too: the first message always goes, however many it has.
		var put []queue.Traced
		var rcpts, skipped int
		for i, m := range msgs {
			if i > 0 && rcpts+len(m.Recipients) > batchRecipients {
				msgs, full = msgs[:i], true
				break
			}
			if m.ID == "" {
				skipped++
				continue
			}
			rcpts += len(m.Recipients)
			put = append(put, m.Traced)
		}
		wctx, cancel := context.WithTimeout(ctx, p.Timeout)
		err = p.Store.Put(wctx, p.Node, put)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && p.limit > 1 {
				p.limit = max(1, p.limit/2)
				p.Logger.Warn("tracking: a batch took too long to hand over; trying smaller batches", "messages", len(put),
					"recipients", rcpts, "batch", p.limit)
			}
			return err
		}
		if skipped > 0 {
			p.Logger.Warn("tracking: finished messages pruned from this node's archive before they were handed over; they are missing from the shared tracking",
				"messages", skipped)
		}
		if err := p.Outbox.DoneOutbox(ctx, msgs[len(msgs)-1].Seq); err != nil {
			return err
		}
		if p.limit < batch {
			p.limit = min(batch, p.limit*2)
		}
		if !full {
			break
		}
	}
	p.prune(ctx)
	return nil
}

// prune removes what finished before the retention from the shared table, chunk by chunk, once an hour
// (every pruneRetry after a failure), and tells PruneState how it went.
func (p *Publisher) prune(ctx context.Context) {
	now := p.Now()
	if p.Retention <= 0 || now.Before(p.pruneNext) {
		return
	}
	chunk := p.PruneChunk
	if chunk <= 0 {
		chunk = 2000
	}
	var total int64
	var err error
	for range maxPruneChunks {
		pctx, cancel := context.WithTimeout(ctx, p.Timeout)
		var n int64
		n, err = p.Store.Prune(pctx, now.Add(-p.Retention), chunk)
		cancel()
		total += n
		if err != nil || n < int64(chunk) {
			break
		}
	}
	if ctx.Err() != nil {
		return
	}
	if total > 0 {
		p.Logger.Info("tracking: pruned the shared table", "messages", total)
	}
	p.pruneNext = now.Add(time.Hour)
	if err != nil {
		p.pruneNext = now.Add(pruneRetry)
	}
	if p.PruneState != nil {
		p.PruneState(err)
	}
}

// Merge returns the cluster's matches (shared, each with its node) and this node's own archive's (local,
// named self), newest first, each message once: a message of this node found in both is taken from the
// shared table. It keeps at most limit.
func Merge(self string, shared, local []queue.Traced, limit int) []queue.Traced {
	seen := map[[2]string]bool{}
	var out []queue.Traced
	for _, t := range shared {
		seen[[2]string{t.Node, t.ID}] = true
		out = append(out, t)
	}
	for _, t := range local {
		t.Node = self
		if !seen[[2]string{self, t.ID}] {
			out = append(out, t)
		}
	}
	sortNewest(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func sortNewest(ts []queue.Traced) {
	slices.SortStableFunc(ts, func(a, b queue.Traced) int {
		return cmp.Or(b.Finished.Compare(a.Finished), strings.Compare(a.ID, b.ID), strings.Compare(a.Node, b.Node))
	})
}
