package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// Room on a full disk. Recording a delivery result is itself a write to the index: when the data volume is
// full, results cannot be recorded, and the bodies of delivered messages, which are freed only once their
// results are recorded, keep the space. Nothing would ever give room back. Three things keep that from
// happening:
//
//   - The reserve: a file of Options.Reserve octets next to the index (<index>.reserve), made at Open.
//     When an index write fails for lack of room, the queue removes it and checkpoints the index's
//     write-ahead log (store.DB.Checkpoint), so that the results can be recorded and the bodies freed. It is
//     made again once twice its size is free.
//   - The margin: Submit refuses a message (452 4.3.1 through ErrNoSpace) while less than Options.Reserve
//     octets are free on the spool's file system (and then until a quarter more is free), or while the
//     reserve is in use. Intake stops well before
//     the index runs out of room, which the reserve is only for when something else fills the volume.
//   - The log: SQLite checkpoints its write-ahead log only when a commit leaves it at 4 MiB; on a small
//     volume it would grow into every octet set free. The queue checkpoints it when it takes more than a
//     quarter of the free space (store.DB.TrimWAL), after each commit and every spaceCheckInterval.
//
// While results cannot be recorded, or intake refuses for want of room, Options.StorageState is told, once
// per change, and the change is logged once.

// DefaultReserve is the default of Options.Reserve: enough for the index to record the results of the
// messages in flight and to checkpoint its log on a volume that something else filled.
const DefaultReserve = 512 << 10

// reserveSuffix names the reserve file: the index's path and this.
const reserveSuffix = ".reserve"

// spaceCheckInterval is how often the recorder checks the room on the volume (the write-ahead log, the
// reserve) when nothing is committed.
const spaceCheckInterval = 5 * time.Second

// space keeps room on the data volume for the index (see above).
type space struct {
	db      *store.DB
	dir     string // the spool directory, whose file system intake fills
	path    string // the reserve file
	size    int64  // Options.Reserve; 0: no reserve, no margin
	log     *slog.Logger
	onState func(error)

	held atomic.Bool // the reserve file is in place (always true without a reserve)

	reportMu sync.Mutex // serialises report
	mu       sync.Mutex
	full     error  // the index write that failed for lack of room, until a record works again
	low      bool   // Submit found less than size octets free
	reported string // the state last reported, "" when fine
}

func newSpace(opts Options, log *slog.Logger) *space {
	s := &space{db: opts.DB, dir: opts.Dir, path: opts.DB.Path + reserveSuffix, log: log, onState: opts.StorageState}
	if opts.Reserve > 0 {
		s.size = opts.Reserve
	}
	return s
}

// open finds or makes the reserve. A volume too full for it is not an error: intake refuses until there
// is room, and the state says so.
func (s *space) open() {
	if s.size == 0 {
		s.held.Store(true)
		return
	}
	os.Remove(s.path + ".tmp")
	if fi, err := os.Stat(s.path); err == nil && fi.Size() == s.size {
		s.held.Store(true)
		return
	}
	if err := s.makeReserve(); err != nil {
		s.log.Warn("queue: cannot make the room reserved for the index; intake answers 452 until it can", "file", s.path, "err", err)
	}
	s.report()
}

// makeReserve writes the reserve file: zeros, so that its blocks are allocated, then fsync and rename.
func (s *space) makeReserve() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for left := s.size; left > 0 && err == nil; left -= int64(len(buf)) {
		_, err = f.Write(buf[:min(left, int64(len(buf)))])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	s.held.Store(true)
	return nil
}

// admit is Submit's check before it writes a body: ErrNoSpace while the reserve is in use or less than its
// size is free on the spool's file system.
func (s *space) admit() error {
	if s.size == 0 {
		return nil
	}
	if !s.held.Load() {
		return fmt.Errorf("%w: %w: the room reserved for the queue index is in use", ErrTemporary, ErrNoSpace)
	}
	free, err := store.FreeSpace(s.dir)
	if err != nil {
		return nil // unknown: the writes say when the disk is full
	}
	if s.noteFree(free) {
		return fmt.Errorf("%w: %w: %d octets free in %s, less than the %d kept for the queue index",
			ErrTemporary, ErrNoSpace, free, s.dir, s.size)
	}
	return nil
}

// noteFree notes the free space on the spool's file system and says whether intake is to refuse for
// want of it. Once refusing, intake waits for a quarter more than the margin: the log's checkpoints give
// back up to that much (TrimWAL), and intake should not flap with them.
func (s *space) noteFree(free int64) bool {
	s.mu.Lock()
	low := free < s.size || s.low && free < s.size+s.size/4
	changed := low != s.low
	s.low = low
	s.mu.Unlock()
	if changed {
		s.report()
	}
	return low
}

// indexFull is told that an index write failed for lack of room: it gives the reserve's room to the index
// and checkpoints the write-ahead log, so that the next try can work.
func (s *space) indexFull(err error) {
	s.mu.Lock()
	first := s.full == nil
	s.full = err
	s.mu.Unlock()
	if first {
		s.log.Error("queue: disk full: delivery results cannot be recorded; intake answers 452 4.3.1", "err", err)
	}
	if s.size > 0 && s.held.Load() {
		if rerr := os.Remove(s.path); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			s.held.Store(false)
			s.log.Warn("queue: the room reserved for the queue index is in use", "octets", s.size)
		} else {
			s.log.Error("queue: cannot free the room reserved for the queue index", "file", s.path, "err", rerr)
		}
	}
	if cerr := s.db.Checkpoint(context.Background()); cerr != nil {
		s.log.Debug("queue: checkpoint of the index on a full disk failed", "err", cerr)
	}
	s.report()
}

// indexOK is told that results were recorded.
func (s *space) indexOK() {
	s.mu.Lock()
	was := s.full
	s.full = nil
	s.mu.Unlock()
	if was != nil {
		s.log.Info("queue: delivery results are recorded again")
		s.report()
	}
}

// check trims the write-ahead log when it takes much of the free space and makes the reserve again once
// there is room for it and as much besides.
func (s *space) check() {
	if _, err := s.db.TrimWAL(context.Background()); err != nil {
		s.log.Debug("queue: checkpoint of the index failed", "err", err)
	}
	if s.size == 0 {
		return
	}
	free, err := store.FreeSpace(s.dir)
	unknown := errors.Is(err, store.ErrFreeSpaceUnknown)
	if err != nil && !unknown {
		return
	}
	if s.held.Load() {
		if !unknown {
			s.noteFree(free)
		}
		return
	}
	if !unknown && free < 2*s.size {
		return
	}
	if err := s.makeReserve(); err != nil {
		s.log.Debug("queue: cannot make the room reserved for the index yet", "err", err)
		return
	}
	s.log.Info("queue: the room reserved for the queue index is kept again", "octets", s.size)
	if free, err := store.FreeSpace(s.dir); err == nil {
		s.noteFree(free)
	}
	s.report()
}

// state is what an administrator is told: nil when there is room.
func (s *space) state() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.full != nil:
		return fmt.Errorf("%w: disk full, delivery results cannot be recorded (%v); intake answers 452 4.3.1", ErrNoSpace, s.full)
	case !s.held.Load():
		return fmt.Errorf("%w: disk nearly full: the %d octets reserved for the queue index (%s) are in use; intake answers 452 4.3.1 until twice as much is free",
			ErrNoSpace, s.size, s.path)
	case s.low:
		return fmt.Errorf("%w: disk nearly full: less than %d octets free in %s; intake answers 452 4.3.1", ErrNoSpace, s.size, s.dir)
	}
	return nil
}

// report tells Options.StorageState of a change of state.
func (s *space) report() {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	st := s.state()
	text := ""
	if st != nil {
		text = st.Error()
	}
	s.mu.Lock()
	changed := text != s.reported
	s.reported = text
	s.mu.Unlock()
	if changed && s.onState != nil {
		s.onState(st)
	}
}

// StorageErr returns why the queue cannot record results or take messages for lack of room, or nil.
func (q *Queue) StorageErr() error { return q.space.state() }
