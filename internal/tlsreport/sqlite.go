package tlsreport

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// SQLiteStore keeps the reports in a node's embedded SQLite database (the single-node default).
type SQLiteStore struct {
	sqlStore
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLiteStore returns the store in db.
func NewSQLiteStore(db *store.DB) *SQLiteStore {
	return &SQLiteStore{sqlStore: sqlStore{db: db.SQL()}}
}

// Migrate implements Store.
func (s *SQLiteStore) Migrate(ctx context.Context) error { return migrate(ctx, s.db) }

// adoptAggregates moves the aggregates of the days whose report is not handled yet into one held batch with
// the given id, in one transaction, and reports whether there were any. A node that ran on its own database
// and now shares a cluster's store so hands them over like the batches it held while that store was
// unreachable: each once, and none lost to a crash in between.
func (s *SQLiteStore) adoptAggregates(ctx context.Context, id string) (bool, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT p.id, p.day, p.policy_domain, p.policy_type, p.policy_string, p.mx_host,
		p.success, p.failure
		FROM tlsreport_policies p LEFT JOIN tlsreport_reports rep ON rep.day = p.day AND rep.policy_domain = p.policy_domain
		WHERE rep.status IS NULL OR rep.status = ? ORDER BY p.id`, reportBuilt)
	if err != nil {
		return false, err
	}
	var ids []int64
	idx := map[int64]int{}
	var b Batch
	for rows.Next() {
		var pid int64
		var a Aggregate
		var ptype string
		if err := rows.Scan(&pid, &a.Day, &a.Domain, &ptype, &a.PolicyString, &a.MXHost, &a.Success, &a.Failure); err != nil {
			rows.Close()
			return false, err
		}
		a.PolicyType = tlsrpt.PolicyType(ptype)
		idx[pid] = len(b.Aggregates)
		ids = append(ids, pid)
		b.Aggregates = append(b.Aggregates, a)
	}
	if err := rows.Close(); err != nil {
		return false, err
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if len(ids) == 0 {
		return false, nil
	}
	frows, err := tx.QueryContext(ctx, `SELECT policy_id, result_type, sending_ip, receiving_mx, receiving_helo,
		receiving_ip, reason_code, additional, count FROM tlsreport_failures`)
	if err != nil {
		return false, err
	}
	for frows.Next() {
		var pid int64
		var f FailureCount
		var rt string
		if err := frows.Scan(&pid, &rt, &f.SendingIP, &f.ReceivingMX, &f.Helo, &f.ReceivingIP, &f.ReasonCode,
			&f.Additional, &f.Count); err != nil {
			frows.Close()
			return false, err
		}
		f.ResultType = tlsrpt.ResultType(rt)
		if i, ok := idx[pid]; ok {
			b.Aggregates[i].Failures = append(b.Aggregates[i].Failures, f)
		}
	}
	if err := frows.Close(); err != nil {
		return false, err
	}
	if err := frows.Err(); err != nil {
		return false, err
	}
	for _, pid := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tlsreport_failures WHERE policy_id = ?`, pid); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tlsreport_policies WHERE id = ?`, pid); err != nil {
			return false, err
		}
	}
	// The report-ids of reports not sent yet were this node's alone; the cluster gives the days its own.
	if _, err := tx.ExecContext(ctx, `DELETE FROM tlsreport_reports WHERE status = ?`, reportBuilt); err != nil {
		return false, err
	}
	b.ID = id
	js, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_held (id, batch, added) VALUES (?, ?, ?)`,
		id, string(js), fmtTime(time.Now())); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// pendingDeliveries counts the report deliveries not finished yet.
func (s *SQLiteStore) pendingDeliveries(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tlsreport_deliveries
		WHERE status IN ('pending', 'retrying', 'sending')`).Scan(&n)
	return n, err
}
