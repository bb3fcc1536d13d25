package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
)

// Spool layout: Dir/<id> is the body of message <id>; Dir/tmp.<id>.* are bodies being written (never
// acknowledged, removed at Open); QuarantineDir holds bodies that had no index row or did not match it.

const tmpPrefix = "tmp."

// idEncoding is base32 with the "extended hex" alphabet, whose order is the byte order, so ids sort by time.
var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// newID returns a 26-character, URL-safe, lower-case id: 48 bits of milliseconds since 1970, then 80 random
// bits. Ids sort by acceptance time; randomness comes from crypto/rand so that two queues (or a restarted
// one with a fake clock) never collide.
func newID(now time.Time) (string, error) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("queue: id: %w", err)
	}
	return strings.ToLower(idEncoding.EncodeToString(b[:])), nil
}

func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

func (q *Queue) bodyPath(id string) string { return filepath.Join(q.opts.Dir, id) }

// sqliteFull is SQLITE_FULL, the primary result code for "database or disk is full".
const sqliteFull = 13

// noSpace says whether err is a full disk: ENOSPC, EDQUOT (which looks the same to a client) or SQLite's
// "database or disk is full".
func noSpace(err error) bool {
	var se *sqlite.Error
	full := errors.As(err, &se) && se.Code()&0xff == sqliteFull
	return full || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// storageErr wraps a local failure for the SMTP layer: always ErrTemporary, and ErrNoSpace for a full disk
// (noSpace).
func storageErr(op string, err error) error {
	if noSpace(err) {
		return fmt.Errorf("%w: %w: %s: %w", ErrTemporary, ErrNoSpace, op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrTemporary, op, err)
}

// bodySync says when a body's content is made durable.
type bodySync int

const (
	syncBodyNow       bodySync = iota // fsync the file before its rename
	syncBodyWithGroup                 // the committer's file-system flush covers it (Options.GroupSync)
)

// writeBody stores body as Dir/<id>: write to a temporary file, fsync it (unless the group's flush is to
// cover it) and rename it into place. The rename is not durable yet: the caller fsyncs the spool directory
// (or, with GroupSync, the file system) before it commits the index row (the committer does it once per
// group), so that the name and the content are both durable before the row exists. A crash before that
// commit leaves a body without an index row, never acknowledged, which Open moves to the quarantine
// directory. On error nothing is left behind. It sets rec.size and rec.sum (the number of octets written and
// their SHA-256, which the index keeps so that every later read can be verified), and rec.flushEpoch
// (see dropLost).
func (q *Queue) writeBody(rec *record, body io.Reader, when bodySync) error {
	f, tmp := q.spare.take()
	if f == nil {
		var err error
		if f, err = os.CreateTemp(q.opts.Dir, tmpPrefix+rec.id+".*"); err != nil {
			return storageErr("create spool file", err)
		}
		tmp = f.Name()
	}
	// Read once the file is open and before its first write: a flush that fails after this may have lost it.
	rec.flushEpoch = q.failedFlushes.Load()
	fail := func(op string, err error) error {
		f.Close()
		os.Remove(tmp)
		return storageErr(op, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		return fail("write spool file", err)
	}
	if n == 0 {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%w: empty message", ErrInvalid)
	}
	// Never retry a failed fsync on the same file: after a failure the page cache may already have dropped
	// the dirty pages (the PostgreSQL "fsyncgate" lesson). The message is refused instead.
	if when == syncBodyNow {
		if err := q.opts.SyncFile(f); err != nil {
			return fail("fsync spool file", err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return storageErr("close spool file", err)
	}
	final := q.bodyPath(rec.id)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return storageErr("rename spool file", err)
	}
	rec.size, rec.sum = n, h.Sum(nil)
	return nil
}

// recover reconciles the spool with the index at Open:
//   - temporary files are unacknowledged leftovers of interrupted Submits: removed;
//   - body files without an index row were never acknowledged (or belong to a finished message whose
//     body removal was interrupted): moved to QuarantineDir;
//   - messages with queued recipients whose body is missing, empty, of the wrong size or unreadable are
//     quarantined: their recipients move to state "quarantined", a queue_quarantine row says why, the body
//     (if any) moves to QuarantineDir. Nothing is deleted.
//
// Queued recipients are due at their next_attempt as before, except those whose attempt was in flight
// (resumeInterrupted).
func (q *Queue) recover(ctx context.Context) error {
	entries, err := readDirUnsorted(q.opts.Dir)
	if err != nil {
		return fmt.Errorf("queue: read spool: %w", err)
	}
	// files holds the body files not yet matched to an index row; sized once (a million queued messages
	// made its growth a large part of Open).
	files := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
		case name == journalName, name == journalName+".1":
		case strings.HasPrefix(name, sparePrefix):
			q.spare.found(name)
		case strings.HasPrefix(name, tmpPrefix):
			if err := os.Remove(filepath.Join(q.opts.Dir, name)); err != nil {
				return fmt.Errorf("queue: remove leftover %s: %w", name, err)
			}
			q.log.Info("queue: removed unacknowledged spool file", "file", name)
		default:
			files[name] = true
		}
	}

	type bad struct{ id, reason string }
	var bads []bad
	rows, err := q.db.QueryContext(ctx, `SELECT m.id, m.size FROM queue_messages m
		WHERE EXISTS (SELECT 1 FROM queue_recipients r WHERE r.msg_id = m.id AND r.state = 'queued')`)
	if err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	for rows.Next() {
		var id string
		var size int64
		if err := rows.Scan(&id, &size); err != nil {
			rows.Close()
			return fmt.Errorf("queue: recover: %w", err)
		}
		present := files[id]
		delete(files, id)
		if reason := q.checkBody(id, size, present); reason != "" {
			bads = append(bads, bad{id, reason})
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	for _, b := range bads {
		if err := q.quarantine(ctx, b.id, b.reason); err != nil {
			return err
		}
	}
	if err := q.replayJournal(ctx); err != nil {
		return err
	}
	if err := q.resumeInterrupted(ctx); err != nil {
		return err
	}
	// Files of messages that are in the index but have no queued recipient (already quarantined) stay
	// out of the way too.
	for name := range files {
		if err := q.moveToQuarantine(name); err != nil {
			return err
		}
		q.log.Warn("queue: spool file without index entry moved to quarantine", "file", name)
	}
	return nil
}

// readDirUnsorted is os.ReadDir without the sort by name, which nothing here needs (a million names took
// seconds to sort).
func readDirUnsorted(dir string) ([]os.DirEntry, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// checkBody returns why the body of message id cannot be used, or "". It costs one stat(2): with a
// million messages queued, opening and reading each body made Open take minutes. The content is verified
// against its checksum whenever it is read for delivery (openVerified), which quarantines a body that no
// longer matches.
func (q *Queue) checkBody(id string, size int64, present bool) string {
	if !present {
		return "body file missing"
	}
	fi, err := os.Stat(q.bodyPath(id))
	if err != nil {
		return "body file unreadable: " + err.Error()
	}
	switch {
	case !fi.Mode().IsRegular():
		return "body is not a regular file: " + fi.Mode().Type().String()
	case fi.Size() == 0:
		return "body file empty"
	case fi.Size() != size:
		return fmt.Sprintf("body file has %d octets, index says %d", fi.Size(), size)
	}
	return ""
}

// quarantine takes message id out of delivery, keeping everything for an administrator.
func (q *Queue) quarantine(ctx context.Context, id, reason string) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", id, err)
	}
	now := ns(q.now())
	if _, err := tx.ExecContext(ctx, `UPDATE queue_recipients SET state = ?, updated = ?, last_text = ?
		WHERE msg_id = ? AND state = ?`, stateQuarantined, now, "quarantined: "+reason, id, stateQueued); err != nil {
		tx.Rollback()
		return fmt.Errorf("queue: quarantine %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO queue_quarantine(msg_id, reason, at) VALUES(?, ?, ?)
		ON CONFLICT(msg_id) DO UPDATE SET reason = excluded.reason, at = excluded.at`, id, reason, now); err != nil {
		tx.Rollback()
		return fmt.Errorf("queue: quarantine %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", id, err)
	}
	if _, err := os.Stat(q.bodyPath(id)); err == nil {
		if err := q.moveToQuarantine(id); err != nil {
			return err
		}
	}
	q.quarantined.Add(1)
	q.log.Error("queue: message quarantined", "msg_id", id, "reason", reason)
	return nil
}

func (q *Queue) moveToQuarantine(name string) error {
	if err := os.Rename(filepath.Join(q.opts.Dir, name), filepath.Join(q.opts.QuarantineDir, name)); err != nil {
		return fmt.Errorf("queue: quarantine %s: %w", name, err)
	}
	return nil
}

// maxInterrupted is how many crashes in a row may cut a recipient's attempt short before its retry waits
// for the backoff again: a message that crashes the gateway must not crash it on every start. It is well
// above what unrelated crashes do to one recipient: an operator's restarts in quick succession (or the
// crash test's kills 50 acknowledgements apart) can catch the same recipient in flight two or three times.
const maxInterrupted = 10

// resumeInterrupted makes the recipients whose attempt was in flight at a crash due now. The interrupted
// attempt was never counted (attempts are counted when their result is recorded), so it pushes no backoff;
// the receiver may have taken the message already, which costs a duplicate, never a loss. As Postfix does,
// the retry comes at once rather than after the retry interval. After maxInterrupted crashes in a row the
// recipient keeps the retry time recorded when the attempt started.
func (q *Queue) resumeInterrupted(ctx context.Context) error {
	now := ns(q.now())
	res, err := q.db.ExecContext(ctx, `UPDATE queue_recipients SET inflight = 0, interrupted = interrupted + 1,
		next_attempt = CASE WHEN interrupted < ? THEN ? ELSE next_attempt END, updated = ?
		WHERE inflight = 1 AND state = ?`, maxInterrupted, now, now, stateQueued)
	if err != nil {
		return fmt.Errorf("queue: resume interrupted deliveries: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		q.log.Warn("queue: deliveries interrupted by a restart are due now", "recipients", n)
	}
	return nil
}
