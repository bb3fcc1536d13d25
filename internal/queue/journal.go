package queue

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// journalEntry is one delivered recipient in the journal.
type journalEntry struct {
	msgID string
	id    int64
}

// journalName is the delivery journal in the spool directory.
const journalName = "delivered.journal"

// journalTrimSize is the size past which the journal is emptied once every entry in it is recorded, or
// else rotated.
const journalTrimSize = 1 << 20

// journalCount counts journal entries by the generation of the file they were written to.
type journalCount map[uint64]int

// journal closes most of the window between a receiver's 250 and the queue's record of it. The record is
// a database transaction whose commit waits for an fsync and for the transactions ahead of it; a message
// whose 250 arrives while its record waits is sent again if the process dies meanwhile. So each delivered
// recipient is first appended to this file with one write(2), before anything else happens, as its
// message id and row id (SQLite reuses the row ids of deleted rows; message ids are never reused): once
// write returns, the entry survives the death of the process (the kernel has it), which is the crash
// that matters for duplicates. At Open the entries are applied to the index before anything is scheduled
// (replayJournal), then the file is emptied. It is not fsynced: after a power loss a duplicate remains
// possible, a loss never (the index still has the recipient queued).
//
// The file is emptied whenever every entry written is recorded in the index and it has grown past
// journalTrimSize. Under sustained load something is always outstanding: then, past that size, the file is
// rotated (renamed to delivered.journal.1, a new one started), and the rotated file is removed once every
// entry written to it is recorded. Only one rotated file exists at a time; replay reads it first.
type journal struct {
	mu          sync.Mutex
	f           *os.File
	path        string
	trim        int64 // journalTrimSize; tests make it smaller
	buf         []byte
	size        int64  // octets of whole entries in the file
	gen         uint64 // generation of the current file; the rotated one is gen-1
	outstanding int    // entries of the current file whose result is not recorded in the index yet
	// rotated is set while delivered.journal.1 exists; oldOutstanding counts its entries not recorded yet.
	rotated        bool
	oldOutstanding int
	// err is the last write error while the journal does not work; each write tries again first.
	err error
	// state, when set, is told each time the journal stops working (the error) or works again (nil).
	state func(error)
}

// appendEntry formats one entry: the message id, the row id and a CRC-32 of both, so that a line torn or
// mangled by a partial write is recognised at replay rather than read as another recipient.
func appendEntry(b []byte, msgID string, id int64) []byte {
	start := len(b)
	b = append(b, msgID...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, id, 10)
	sum := crc32.ChecksumIEEE(b[start:])
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(sum), 16)
	return append(b, '\n')
}

// parseEntry reads one newline-terminated line (without its newline). Lines written before entries had
// a checksum (two fields) are accepted as they are: they were newline-terminated.
func parseEntry(line string) (journalEntry, bool) {
	fields := strings.Split(line, " ")
	switch len(fields) {
	case 3:
		want, err := strconv.ParseUint(fields[2], 16, 32)
		if err != nil || crc32.ChecksumIEEE([]byte(fields[0]+" "+fields[1])) != uint32(want) {
			return journalEntry{}, false
		}
	case 2:
	default:
		return journalEntry{}, false
	}
	id, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || !validID(fields[0]) {
		return journalEntry{}, false
	}
	return journalEntry{fields[0], id}, true
}

// write appends recipient row id of message msgID; false when it could not. After a failed write the next
// one first cuts the file back to its last whole entry and tries again, so that a passing failure (a full
// disk that was cleaned) does not switch the journal off.
func (j *journal) write(msgID string, id int64) (uint64, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, false, nil
	}
	if j.err != nil {
		if err := j.f.Truncate(j.size); err != nil {
			return 0, false, j.fail(err)
		}
	}
	j.buf = appendEntry(j.buf[:0], msgID, id)
	if _, err := j.f.Write(j.buf); err != nil {
		return 0, false, j.fail(err)
	}
	j.size += int64(len(j.buf))
	if j.err != nil {
		j.err = nil
		if j.state != nil {
			j.state(nil)
		}
	}
	j.outstanding++
	return j.gen, true, nil
}

// fail notes a write error; the state callback hears of the first one of a run. j.mu is held.
func (j *journal) fail(err error) error {
	first := j.err == nil
	j.err = err
	if first && j.state != nil {
		j.state(err)
	}
	return err
}

// recorded notes that the entries counted in n are now in the index (or will never be). It empties the
// current file when nothing written to it is outstanding and it has grown, rotates it when it has grown
// and something is outstanding, and removes the rotated file once nothing written to it is outstanding.
func (j *journal) recorded(n journalCount) error {
	if len(n) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for gen, k := range n {
		switch {
		case gen == j.gen:
			j.outstanding -= k
		case j.rotated && gen+1 == j.gen:
			j.oldOutstanding -= k
		}
	}
	if j.rotated && j.oldOutstanding <= 0 {
		if err := os.Remove(j.path + ".1"); err != nil && !os.IsNotExist(err) {
			return err
		}
		j.rotated, j.oldOutstanding = false, 0
	}
	if j.f == nil || j.size < j.trim {
		return nil
	}
	if j.outstanding <= 0 {
		if err := j.f.Truncate(0); err != nil {
			return err
		}
		j.size = 0
		return nil
	}
	if j.rotated {
		return nil // the rotated file still holds outstanding entries: grow until it is gone
	}
	if err := os.Rename(j.path, j.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		// Keep appending to the renamed file: nothing is lost, it is replayed too.
		os.Rename(j.path+".1", j.path)
		return err
	}
	j.f.Close()
	j.f, j.size = f, 0
	j.rotated, j.oldOutstanding = true, j.outstanding
	j.gen++
	j.outstanding = 0
	return nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// journalDelivered appends a delivered recipient to the journal.
func (q *Queue) journalDelivered(msgID string, id int64) (uint64, bool) {
	gen, ok, err := q.journal.write(msgID, id)
	if err != nil {
		q.log.Error("queue: delivery journal write failed; results are still recorded in the index, the next write tries again",
			"msg_id", msgID, "err", err)
	}
	return gen, ok
}

// JournalErr returns the last write error of the delivery journal while it does not work, or nil.
func (q *Queue) JournalErr() error {
	q.journal.mu.Lock()
	defer q.journal.mu.Unlock()
	return q.journal.err
}

// replayJournal applies the delivery journal left by the previous process: every recipient in it that is
// still queued is recorded as delivered (its message finishes if nothing else is left), then the journal
// is emptied and opened for this process.
func (q *Queue) replayJournal(ctx context.Context) error {
	path := filepath.Join(q.opts.Dir, journalName)
	var ids []journalEntry
	// The rotated file holds the older entries.
	for _, p := range []string{path + ".1", path} {
		e, err := readJournal(p)
		if err != nil {
			return err
		}
		ids = append(ids, e...)
	}
	var done []string
	if len(ids) > 0 {
		var err error
		if done, err = q.applyJournal(ctx, ids); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open delivery journal: %w", err)
	}
	if err := os.Remove(path + ".1"); err != nil && !os.IsNotExist(err) {
		f.Close()
		return fmt.Errorf("queue: remove rotated delivery journal: %w", err)
	}
	q.journal.f, q.journal.path = f, path
	if q.journal.trim == 0 {
		q.journal.trim = journalTrimSize
	}
	for _, id := range done {
		q.recycle(id)
	}
	return nil
}

// applyJournal records the journal's recipients as delivered in one transaction and returns the messages
// that are finished.
func (q *Queue) applyJournal(ctx context.Context, ids []journalEntry) ([]string, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
	}
	defer tx.Rollback()
	now := ns(q.now())
	msgs := map[string]bool{}
	var order []string
	n := 0
	for _, e := range ids {
		msgID := e.msgID
		var rcpt string
		err := tx.QueryRowContext(ctx, `UPDATE queue_recipients SET state = ?, inflight = 0, interrupted = 0,
			attempts = attempts + 1, next_attempt = ?, last_code = 250, last_enhanced = '',
			last_text = 'delivered (recorded from the delivery journal at start)', updated = ?
			WHERE id = ? AND msg_id = ? AND state = ? RETURNING rcpt`, stateDelivered, now, now, e.id, e.msgID, stateQueued).Scan(&rcpt)
		if err != nil {
			continue // no longer queued (recorded before the crash), or gone
		}
		n++
		if _, err := tx.ExecContext(ctx, `INSERT INTO queue_attempts(msg_id, rcpt, at, outcome, code, text)
			VALUES (?, ?, ?, ?, 250, 'delivered (recorded from the delivery journal at start)')`, msgID, rcpt, now, string(Delivered)); err != nil {
			return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
		}
		if !msgs[msgID] {
			msgs[msgID] = true
			order = append(order, msgID)
		}
	}
	var done []string
	for _, id := range order {
		if _, err := tx.ExecContext(ctx, `UPDATE queue_messages SET attempts = attempts + 1 WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
		}
		var live int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND state IN (?, ?)`,
			id, stateQueued, stateQuarantined).Scan(&live); err != nil {
			return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
		}
		if live > 0 {
			continue
		}
		for _, stmt := range []string{`DELETE FROM queue_attempts WHERE msg_id = ?`, `DELETE FROM queue_messages WHERE id = ?`} {
			if _, err := tx.ExecContext(ctx, stmt, id); err != nil {
				return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
			}
		}
		done = append(done, id)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("queue: apply delivery journal: %w", err)
	}
	if n > 0 {
		q.log.Info("queue: deliveries recorded from the delivery journal", "recipients", n, "finished_messages", len(done))
	}
	return done, nil
}

// readJournal returns the whole, intact entries of the journal file at path (none if it does not exist).
func readJournal(path string) ([]journalEntry, error) {
	var ids []journalEntry
	if f, err := os.Open(path); err == nil {
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				// A last line without its newline was torn by a write cut short (the process died, the
				// disk filled): what it holds may be a prefix of another recipient's row id, so it is
				// never applied. Neither is a line whose checksum does not match.
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("queue: read delivery journal: %w", err)
			}
			if e, ok := parseEntry(strings.TrimSuffix(line, "\n")); ok {
				ids = append(ids, e)
			}
		}
		f.Close()
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("queue: read delivery journal: %w", err)
	}
	return ids, nil
}
