package tlsreport

import (
	"context"
	"errors"
	"time"

	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Store keeps the session aggregates, the reports and their report log. Two implementations exist:
// SQLiteStore, in a node's embedded database, and PostgresStore, in the database a cluster shares, where the
// sessions of every node add up into one report per Policy Domain and day. Both pass the same contract tests
// (store_test.go). Their SQL is shared (sqlstore.go); the schemas are each their own.
type Store interface {
	// Migrate brings the store's schema up to date (versioned migrations).
	Migrate(ctx context.Context) error
	// AddSessions adds b's counts to the stored aggregates in one transaction. A batch with an ID is applied
	// at most once: AddSessions returns false, writing nothing, when a batch with that ID was applied before
	// (the hand-over of the batches a node held while the shared database was unreachable).
	AddSessions(ctx context.Context, b Batch) (applied bool, err error)
	// Hold keeps b, which must have an ID, until Release: a node's local copy of the sessions it could not
	// write to the shared database.
	Hold(ctx context.Context, b Batch) error
	// Held returns the batches held, oldest first.
	Held(ctx context.Context) ([]Batch, error)
	// Release forgets the held batch id.
	Release(ctx context.Context, id string) error

	// LoadDay returns the aggregates of one UTC day (YYYY-MM-DD), grouped by Policy Domain, or only domain's
	// when domain is not "".
	LoadDay(ctx context.Context, day, domain string) (map[string][]tlsrpt.PolicyResults, error)
	// ReportID returns the report of (day, domain), creating it in status "built" with id and uid when there
	// is none.
	ReportID(ctx context.Context, day, domain, id, uid string, now time.Time) (gotID, gotUID, status string, err error)
	// MarkReport moves a report out of "built" together with its deliveries, in one transaction. It fails
	// with ErrClaimed when the report is no longer "built" (another sender got there first).
	MarkReport(ctx context.Context, m ReportMark) error
	// DueDeliveries returns the deliveries due at now (pending, retrying, or claimed by a sender whose lease
	// has run out), of one report when reportID is not "", oldest due first.
	DueDeliveries(ctx context.Context, now time.Time, reportID string) ([]DueDelivery, error)
	// ClaimDelivery leases a due delivery to owner until until. It returns false when the delivery is no
	// longer due (another sender claimed it).
	ClaimDelivery(ctx context.Context, id int64, owner string, now, until time.Time) (bool, error)
	// RecordAttempt stores the outcome of an attempt made under a.Owner's lease. It returns false, writing
	// nothing, when the lease was taken over by another sender: only the holder of the lease records.
	RecordAttempt(ctx context.Context, a Attempt) (bool, error)
	// Deliveries returns the report log, of one report when reportID is not "", in insertion order.
	Deliveries(ctx context.Context, reportID string) ([]SentReport, error)
	// Pending summarises the aggregates whose report is not handled yet, oldest day first.
	Pending(ctx context.Context) ([]PendingSummary, error)
	// Suppress adds or updates a suppression entry (already normalised).
	Suppress(ctx context.Context, entry, note string, now time.Time) error
	// Unsuppress removes a suppression entry.
	Unsuppress(ctx context.Context, entry string) error
	// Suppressions returns the suppression list, sorted.
	Suppressions(ctx context.Context) ([]Suppression, error)
	// Prune deletes the aggregates, reports, finished report log entries and hand-over marks of the days
	// before day (YYYY-MM-DD).
	Prune(ctx context.Context, day string) error
}

// ErrClaimed is returned by Store.MarkReport when the report was already handled.
var ErrClaimed = errors.New("tlsreport: report already handled")

// Batch is a set of aggregated session counts written together.
type Batch struct {
	// ID, when not "", makes AddSessions idempotent. The Recorder gives every batch one before its first
	// write, so that a write whose reply was lost is applied once when it is written again.
	ID         string      `json:"id,omitempty"`
	Aggregates []Aggregate `json:"aggregates"`
}

// Aggregate is the count of sessions under one policy of one Policy Domain on one UTC day.
type Aggregate struct {
	Day          string            `json:"day"`    // YYYY-MM-DD
	Domain       string            `json:"domain"` // A-label
	PolicyType   tlsrpt.PolicyType `json:"policy_type"`
	PolicyString string            `json:"policy_string"` // JSON array
	MXHost       string            `json:"mx_host"`       // JSON array
	Success      int64             `json:"success"`
	Failure      int64             `json:"failure"`
	Failures     []FailureCount    `json:"failures,omitempty"`
}

// FailureCount is one "failure-details" entry of an aggregate and its count.
type FailureCount struct {
	ResultType  tlsrpt.ResultType `json:"result_type"`
	SendingIP   string            `json:"sending_ip"`
	ReceivingMX string            `json:"receiving_mx"`
	Helo        string            `json:"helo"`
	ReceivingIP string            `json:"receiving_ip"`
	ReasonCode  string            `json:"reason_code"`
	Additional  string            `json:"additional"`
	Count       int64             `json:"count"`
}

// ReportMark is the move of a report out of "built".
type ReportMark struct {
	Day, Domain, ReportID string
	Status, Detail        string
	// Gz is the gzipped report, kept so that every attempt sends the same bytes.
	Gz []byte
	// Deliveries are created with the mark: one per destination.
	Deliveries []NewDelivery
	Now        time.Time
}

// NewDelivery is a destination of a report and its first status (pending or suppressed).
type NewDelivery struct {
	Destination, Status string
}

// DueDelivery is a delivery due for an attempt, with what the attempt needs.
type DueDelivery struct {
	ID                    int64
	Day, Domain, ReportID string
	Destination           string
	FirstAttempt          time.Time
	Attempts              int
	UniqueID              string
	Gz                    []byte
}

// Attempt is the outcome of one delivery attempt.
type Attempt struct {
	ID           int64
	Owner        string
	Status       string
	Attempts     int
	FirstAttempt time.Time
	LastAttempt  time.Time
	NextAttempt  time.Time // zero: none
	MsgID        string
	LastError    string
}
