// Package queue implements mxgate's durable outbound queue and its scheduler: the spool of message bodies,
// the SQLite index of messages, recipients and attempts, retry with backoff and jitter, expiry, and the
// delivery status notifications (RFC 3464, through package dsn) that follow a failure.
//
// Durability (RFC 5321 Section 6.1): Submit returns only after the body file is fsynced and renamed into the
// spool, the spool directory is fsynced, and the index rows are committed (SQLite synchronous=FULL). The
// index commit is the point of durability. Concurrent Submits share one index transaction (group commit)
// and one directory fsync, made by the committer before the commit, which covers every rename of the
// group; their bodies are written and fsynced in their own goroutines.
//
// Scheduling (RFC 5321 Section 4.5.4.1): one scheduler goroutine, no per-message timers or goroutines. The
// queued recipients are indexed in memory (index.go) by domain and next attempt, so finding due work costs
// no SQL; SQLite stays the durable truth, and the index is rebuilt from it at Open. Due recipients are
// grouped by domain and then by message into Batches, handed to the Deliverer by a bounded number of
// workers, and each message's results recorded as soon as the reply for it arrives (apply.go), in
// transactions shared by every worker (group commit). A recipient is marked in flight, not counted, when
// its attempt starts; after a crash, the recipients in flight are due at once and the interrupted attempt
// counts for nothing (resumeInterrupted), so a recipient may be delivered twice but is never lost.
//
// Finished messages (no queued recipient left) are deleted with their body and history; the final outcome
// is in the logs. The queue does not send "delivered"/"relayed" or "delayed" DSNs (NOTIFY=SUCCESS,DELAY):
// the Result type does not say whether the next hop took over DSN duty.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/atomicfile"
	"github.com/mxgate/mxgate/internal/store"
)

// Errors. The SMTP layer maps ErrNoSpace to 452 4.3.1 and any other ErrTemporary to 451 4.3.0.
var (
	// ErrTemporary is wrapped by every Submit failure caused by the local system (write, fsync, rename,
	// commit). Nothing of the message is left in the queue.
	ErrTemporary = errors.New("queue: temporary local failure")
	// ErrNoSpace is wrapped (together with ErrTemporary) when the failure was ENOSPC.
	ErrNoSpace = errors.New("queue: no space left on spool device")
	// ErrInvalid is wrapped when the envelope or body is unusable (no recipient, bad address, empty body).
	ErrInvalid = errors.New("queue: invalid message")
	// ErrNotFound is returned by admin operations on an unknown message id.
	ErrNotFound = errors.New("queue: message not found")
	// ErrClosed is returned by Submit after Close.
	ErrClosed = errors.New("queue: closed")
	// ErrBodyCorrupt is wrapped by the error of a body read for delivery that no longer matches the
	// checksum taken when the message was accepted; the message is quarantined.
	ErrBodyCorrupt = errors.New("queue: message body corrupt")
	// ErrInFlight is returned by Bounce and Delete while a delivery attempt of the message is in flight:
	// its result (perhaps a 250) is not recorded yet, so acting now could bounce or drop a delivered
	// recipient. Nothing was changed; try again once the attempt is recorded.
	ErrInFlight = errors.New("queue: delivery in flight, retry later")
)

// Backoff is the retry schedule. The delay after the n-th attempt is Initial·Factor^(n-1), at most Max, then
// lengthened by a random fraction in [0, Jitter). Jitter only ever lengthens the delay, so the schedule's
// intervals are lower bounds.
//
// Zero fields take the defaults; a negative Jitter disables jitter.
// Defaults: Initial 15m, Factor 2, Max 4h, Jitter 0.1: retries after about 15m, 30m, 1h, 2h, 4h, 4h, ...
// RFC 5321 Section 4.5.4.1 (SMTP-10): the retry interval SHOULD be at least 30 minutes; the first retry comes
// earlier because most temporary failures (greylisting, a restarting MX) clear within minutes.
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
	Jitter  float64
}

// Options configure a Queue. DB, Dir and Deliverer are required; everything else has a default.
type Options struct {
	// Dir is the spool directory holding one body file per message.
	Dir string
	// QuarantineDir receives body files that cannot be used; default Dir/quarantine.
	QuarantineDir string
	// DB holds the index (tables queue_messages, queue_recipients, queue_attempts, queue_quarantine).
	DB        *store.DB
	Deliverer Deliverer
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand is the jitter source; default a PCG seeded from the clock. Guarded by a mutex.
	Rand   *rand.Rand
	Logger *slog.Logger
	// Hostname is the Reporting-MTA of DSNs; default os.Hostname().
	Hostname string
	// Postmaster is the From: of DSNs; default postmaster@Hostname.
	Postmaster string
	// MaxLifetime is how long a message is retried before it bounces; default 5 days (RFC 5321 Section
	// 4.5.4.1: "at least 4-5 days"). DSNMaxLifetime is the same for DSNs; default MaxLifetime.
	MaxLifetime    time.Duration
	DSNMaxLifetime time.Duration
	Backoff        Backoff
	// Concurrency is the number of batches in flight at once (default 16); PerDomain the number per
	// destination domain (default 2); MaxBatch the number of messages in one batch (default 50).
	Concurrency int
	PerDomain   int
	MaxBatch    int
	// BatchWait is how long due work for a domain that already has a batch in flight waits for more work
	// before a further batch starts (default 20ms; negative: no wait). A domain with nothing in flight
	// starts its batch at once, and a full batch never waits.
	BatchWait time.Duration
	// ReportBounceTo receives the bounces of messages with Envelope.Report; when empty they are dropped
	// (and logged).
	ReportBounceTo string
	// DrainTimeout is how long Run lets in-flight deliveries finish after its context is cancelled before
	// cancelling theirs; default 30s.
	DrainTimeout time.Duration
	// GroupCommitWindow is how long the committer waits for more Submits after the first one (default 1ms;
	// negative: do not wait, only take what is already waiting). GroupCommitMax caps one transaction
	// (default 256).
	GroupCommitWindow time.Duration
	GroupCommitMax    int
	// MaxDSNReturn caps the size of an original returned in full in a DSN (default dsn.DefaultMaxFull).
	MaxDSNReturn int64
	// SyncFile and SyncDir are the fsync calls; tests inject failures. Default (*os.File).Sync and an fsync
	// of the opened directory.
	SyncFile func(*os.File) error
	SyncDir  func(dir string) error
	// GroupSync makes one file-system flush per commit group cover the bodies too: Submit writes and renames
	// a body without an fsync, and the committer, instead of an fsync of the spool directory, flushes the
	// spool's whole file system once (syncfs(2), through SyncFS) before it commits the group's index rows.
	// The flush is made on a descriptor opened at Open, before any body is written, so it reports every
	// writeback error on that file system since then (Linux 5.8 and later; Open refuses GroupSync on older
	// kernels, whose syncfs does not report them: see GroupSyncSupported). docs/durability.md has the recipe and its crash cases.
	GroupSync bool
	// SyncFS flushes the file system of the open file; default syncfs(2). Tests inject failures.
	SyncFS func(*os.File) error
	// OnSettled, when set, is told about each recipient that reached a final state, after it is recorded.
	OnSettled func(Settled)
	// JournalState, when set, is called when the delivery journal stops working (with the write error)
	// and when it works again (nil). Meanwhile results are still recorded in the index, but a crash
	// between a 250 and its record may deliver that message again.
	JournalState func(err error)
	// Reserve is the room, in octets, kept on the data volume for the index (space.go): a reserve file next
	// to the index, and the free space below which Submit refuses messages with ErrNoSpace. Default
	// DefaultReserve; negative: none.
	Reserve int64
	// StorageState, when set, is called when the queue cannot record delivery results or refuses messages
	// for lack of room (with why, wrapping ErrNoSpace), and when it can again (nil).
	StorageState func(err error)
	// DelayWarning is how long after its message's arrival a deferred recipient's sender gets one delay
	// notice (delaynotice.go); 0 means never. DelayWarningDefault sends them for recipients without a
	// NOTIFY parameter.
	DelayWarning        time.Duration
	DelayWarningDefault bool
	// ArchiveRetention is how long finished messages stay findable with Trace (archive.go); default
	// DefaultArchiveRetention, negative: not archived.
	ArchiveRetention time.Duration
	// TrackingOutbox also records each archived message in the tracking outbox, in the same transaction,
	// for a publisher to hand over to the cluster's shared tracking (Outbox, DoneOutbox).
	TrackingOutbox bool
}

func (o *Options) setDefaults() error {
	if o.DB == nil || o.Dir == "" || o.Deliverer == nil {
		return errors.New("queue: Options.DB, Dir and Deliverer are required")
	}
	if o.QuarantineDir == "" {
		o.QuarantineDir = filepath.Join(o.Dir, "quarantine")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ArchiveRetention == 0 {
		o.ArchiveRetention = DefaultArchiveRetention
	}
	if o.Reserve == 0 {
		o.Reserve = DefaultReserve
	}
	if o.Rand == nil {
		seed := uint64(time.Now().UnixNano())
		o.Rand = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("queue: hostname: %w", err)
		}
		o.Hostname = h
	}
	if o.Postmaster == "" {
		o.Postmaster = "postmaster@" + o.Hostname
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 5 * 24 * time.Hour
	}
	if o.DSNMaxLifetime <= 0 {
		o.DSNMaxLifetime = o.MaxLifetime
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = 15 * time.Minute
	}
	if o.Backoff.Factor < 1 {
		o.Backoff.Factor = 2
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 4 * time.Hour
	}
	if o.Backoff.Jitter < 0 {
		o.Backoff.Jitter = 0
	} else if o.Backoff.Jitter == 0 {
		o.Backoff.Jitter = 0.1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.PerDomain <= 0 {
		o.PerDomain = 2
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 50
	}
	if o.BatchWait == 0 {
		o.BatchWait = 20 * time.Millisecond
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.GroupCommitWindow == 0 {
		o.GroupCommitWindow = time.Millisecond
	}
	if o.GroupCommitMax <= 0 {
		o.GroupCommitMax = 256
	}
	if o.SyncFile == nil {
		o.SyncFile = (*os.File).Sync
	}
	if o.SyncDir == nil {
		o.SyncDir = atomicfile.SyncDir
	}
	if o.SyncFS == nil {
		o.SyncFS = syncFS
	}
	if o.GroupSync {
		if err := groupSyncSupported(); err != nil {
			return fmt.Errorf("%w: set queue.spool_sync = \"file\" or \"auto\"", err)
		}
	}
	return nil
}

// Queue is the durable queue. Its methods are safe for concurrent use, except that Run and RunOnce must not
// run at the same time.
type Queue struct {
	opts Options
	db   *store.DB
	log  *slog.Logger

	randMu sync.Mutex

	commitCh      chan *pending
	stopCommitter chan struct{}
	committerDone chan struct{}
	recordCh      chan *finished
	stopRecorder  chan struct{}
	recorderDone  chan struct{}
	closeOnce     sync.Once
	recorderOnce  sync.Once
	commits       atomic.Int64
	quarantined   atomic.Int64
	dsnFallbacks  atomic.Int64

	st        stmts
	stmtsOnce sync.Once

	kick       chan struct{}
	workerDone chan struct{}
	workers    sync.WaitGroup
	rounds     atomic.Int64 // dispatch rounds that found work, for tests

	// orderMu keeps the index in the order of the commits: it is held from the start of every
	// transaction that changes queued recipients of existing messages (the administrator's operations,
	// dispatch, apply) until the index reflects its commit. Lock order: orderMu, then the database, then mu.
	orderMu sync.Mutex

	mu   sync.Mutex
	ix   *dueIndex
	busy int // batches in flight

	spare spares
	space *space
	// spoolFS is the spool directory, open since Open, for the GroupSync flush (nil without GroupSync).
	spoolFS *os.File
	// failedFlushes counts the failed GroupSync flushes: a body written across one is refused (dropLost).
	failedFlushes atomic.Uint64
	refs          bodyRefs
	journal       journal

	corruptMu sync.Mutex
	corrupt   map[string]string // message id -> why its body failed verification

	// unrecorded holds delivered results whose record failed, for the recorder to try again.
	unrecordedMu sync.Mutex
	unrecorded   []*finished

	// archivePruned is when the archive was last pruned (UnixNano; 0: not yet).
	archivePruned atomic.Int64
	arch          archiveStmts
}

// Open prepares the index, recovers the spool (see recover.go) and starts the group committer. Call Close
// when done; the caller keeps ownership of Options.DB.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx, opts.DB, "queue", migrations); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := migrateArchive(ctx, opts.DB); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := migrateDelayNotices(ctx, opts.DB); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, d := range []string{opts.Dir, opts.QuarantineDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	q := &Queue{
		opts:          opts,
		db:            opts.DB,
		log:           opts.Logger,
		commitCh:      make(chan *pending),
		stopCommitter: make(chan struct{}),
		committerDone: make(chan struct{}),
		recordCh:      make(chan *finished),
		stopRecorder:  make(chan struct{}),
		recorderDone:  make(chan struct{}),
		kick:          make(chan struct{}, 1),
		workerDone:    make(chan struct{}, 1),
		ix:            newDueIndex(opts.PerDomain, opts.MaxBatch, int64(opts.BatchWait)),
	}
	q.spare.dir = opts.Dir
	q.space = newSpace(opts, q.log)
	if !opts.TrackingOutbox {
		if err := q.dropOutbox(ctx); err != nil {
			return nil, err
		}
	}
	if opts.GroupSync {
		// Opened before any body is written: syncfs reports the writeback errors since this open.
		d, err := os.Open(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		q.spoolFS = d
	}
	q.journal.state = opts.JournalState
	// recover opens the delivery journal (replayJournal); every error path below must close it.
	opened := false
	defer func() {
		if !opened {
			q.journal.close()
			q.closeSpoolFS()
		}
	}()
	if err := q.recover(ctx); err != nil {
		return nil, err
	}
	if err := q.prepare(ctx); err != nil {
		return nil, err
	}
	if err := q.arch.prepare(ctx, q.db); err != nil {
		q.st.close()
		return nil, err
	}
	if err := q.loadIndex(ctx); err != nil {
		q.st.close()
		return nil, err
	}
	q.space.open()
	opened = true
	go q.committer()
	go q.recorder()
	return q, nil
}

// Close stops accepting Submits. Run must have returned (or never been started).
func (q *Queue) Close() error {
	q.closeOnce.Do(func() { close(q.stopCommitter) })
	<-q.committerDone
	q.workers.Wait()
	q.recorderOnce.Do(func() { close(q.stopRecorder) })
	<-q.recorderDone
	q.journal.close()
	q.stmtsOnce.Do(q.st.close)
	q.arch.close()
	q.closeSpoolFS()
	return nil
}

func (q *Queue) closeSpoolFS() {
	if q.spoolFS != nil {
		q.spoolFS.Close()
	}
}

// loadIndex builds the in-memory index of queued recipients from the database.
func (q *Queue) loadIndex(ctx context.Context) error {
	rows, err := q.db.QueryContext(ctx, `SELECT r.id, r.msg_id, r.domain, r.next_attempt, m.held
		FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id WHERE r.state = ?`, stateQueued)
	if err != nil {
		return fmt.Errorf("queue: load index: %w", err)
	}
	defer rows.Close()
	q.mu.Lock()
	defer q.mu.Unlock()
	for rows.Next() {
		var id, next int64
		var msgID, domain string
		var held bool
		if err := rows.Scan(&id, &msgID, &domain, &next, &held); err != nil {
			return fmt.Errorf("queue: load index: %w", err)
		}
		if held && !q.ix.held[msgID] {
			q.ix.hold(msgID)
		}
		q.ix.add(id, msgID, domain, next)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("queue: load index: %w", err)
	}
	return nil
}

// Kick wakes the scheduler, for example after an administrator changed a route.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Commits returns the number of index transactions committed for Submits (group commit makes this far
// smaller than the number of Submits under load).
func (q *Queue) Commits() int64 { return q.commits.Load() }

// DSNFallbacks returns the number of DSNs since Open that could not be built as composed and were built
// again with fewer fields (or not at all); their failures were recorded all the same.
func (q *Queue) DSNFallbacks() int64 { return q.dsnFallbacks.Load() }

// Quarantined returns the number of messages quarantined since Open.
func (q *Queue) Quarantined() int64 { return q.quarantined.Load() }

func (q *Queue) now() time.Time { return q.opts.Now() }

// jitter returns a random fraction in [0, 1).
func (q *Queue) jitter() float64 {
	q.randMu.Lock()
	defer q.randMu.Unlock()
	return q.opts.Rand.Float64()
}

// backoff is the delay after a recipient's n-th attempt.
func (q *Queue) backoff(n int) time.Duration {
	b := q.opts.Backoff
	d := float64(b.Initial)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	return time.Duration(d * (1 + b.Jitter*q.jitter()))
}

var migrations = []string{
	`CREATE TABLE queue_messages (
		id TEXT PRIMARY KEY,
		sender TEXT NOT NULL,
		envid TEXT NOT NULL DEFAULT '',
		ret TEXT NOT NULL DEFAULT '',
		flags INTEGER NOT NULL DEFAULT 0,
		client_ip TEXT NOT NULL DEFAULT '',
		size INTEGER NOT NULL,
		received INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		held INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE queue_recipients (
		id INTEGER PRIMARY KEY,
		msg_id TEXT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
		rcpt TEXT NOT NULL,
		domain TEXT NOT NULL,
		notify TEXT NOT NULL DEFAULT '',
		orcpt TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL,
		next_attempt INTEGER NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		last_code INTEGER NOT NULL DEFAULT 0,
		last_enhanced TEXT NOT NULL DEFAULT '',
		last_text TEXT NOT NULL DEFAULT '',
		last_result_type TEXT NOT NULL DEFAULT '',
		last_remote_mta TEXT NOT NULL DEFAULT '',
		last_tls TEXT NOT NULL DEFAULT '',
		last_policy TEXT NOT NULL DEFAULT '',
		updated INTEGER NOT NULL
	);
	CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt);
	CREATE INDEX queue_recipients_msg ON queue_recipients(msg_id);
	CREATE INDEX queue_recipients_domain ON queue_recipients(domain, state);
	CREATE TABLE queue_attempts (
		id INTEGER PRIMARY KEY,
		msg_id TEXT NOT NULL,
		rcpt TEXT NOT NULL,
		at INTEGER NOT NULL,
		outcome TEXT NOT NULL,
		code INTEGER NOT NULL DEFAULT 0,
		enhanced TEXT NOT NULL DEFAULT '',
		text TEXT NOT NULL DEFAULT '',
		remote_mta TEXT NOT NULL DEFAULT '',
		tls TEXT NOT NULL DEFAULT '',
		policy TEXT NOT NULL DEFAULT '',
		result_type TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX queue_attempts_msg ON queue_attempts(msg_id, at);
	CREATE TABLE queue_quarantine (
		msg_id TEXT PRIMARY KEY,
		reason TEXT NOT NULL,
		at INTEGER NOT NULL
	);`,
	// inflight marks a recipient whose attempt has started and whose result is not recorded yet; at Open
	// such a recipient was interrupted by a crash (recover). interrupted counts the crashes in a row that
	// cut its attempt short. body_sum is the SHA-256 of the body as accepted (NULL for messages accepted
	// before it existed: not verified).
	`ALTER TABLE queue_recipients ADD COLUMN inflight INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE queue_recipients ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE queue_messages ADD COLUMN body_sum BLOB;`,
}

// Message flags in queue_messages.flags.
const (
	flagRequireTLS = 1 << iota
	flagTLSOptional
	flagSMTPUTF8
	flag8Bit
	flagReport
	flagDSN
)

// Recipient states.
const (
	stateQueued      = "queued"
	stateDelivered   = "delivered"
	stateFailed      = "failed"
	stateQuarantined = "quarantined"
)

func envFlags(e Envelope) int {
	f := 0
	for _, x := range []struct {
		on  bool
		bit int
	}{
		{e.RequireTLS, flagRequireTLS}, {e.TLSOptional, flagTLSOptional}, {e.SMTPUTF8, flagSMTPUTF8},
		{e.EightBit, flag8Bit}, {e.Report, flagReport}, {e.DSN, flagDSN},
	} {
		if x.on {
			f |= x.bit
		}
	}
	return f
}

func ns(t time.Time) int64     { return t.UnixNano() }
func fromNS(n int64) time.Time { return time.Unix(0, n) }
