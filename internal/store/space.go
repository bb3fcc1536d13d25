package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrCheckpointBusy is wrapped by Checkpoint when a reader or writer kept part of the write-ahead log from
// being copied into the database.
var ErrCheckpointBusy = errors.New("store: checkpoint could not complete: the database is in use")

// WALSize returns the size in octets of the database's write-ahead log file, 0 when there is none.
func (db *DB) WALSize() (int64, error) {
	fi, err := os.Stat(db.Path + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return fi.Size(), nil
}

// Checkpoint copies every page of the write-ahead log into the database file and cuts the log to zero
// octets (PRAGMA wal_checkpoint(TRUNCATE)), giving its space back to the file system. Copying needs room
// only for the pages the database file does not have yet.
func (db *DB) Checkpoint(ctx context.Context) error {
	var busy, logPages, copied int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &copied); err != nil {
		return fmt.Errorf("store: checkpoint %s: %w", db.Path, err)
	}
	if busy != 0 {
		return fmt.Errorf("%w: %d of %d pages copied", ErrCheckpointBusy, copied, logPages)
	}
	return nil
}

// TrimWAL checkpoints (Checkpoint) when the write-ahead log takes more than a quarter of the space still
// free on its file system, and says whether it did. SQLite checkpoints by itself only when a commit leaves
// the log at 1,000 pages (4 MiB) or more. On a small or nearly full volume the log never gets there: it
// grows with every commit, each appending the pages it changed, until the volume is full, and then no
// commit succeeds and no checkpoint ever comes. On a volume with room TrimWAL does nothing.
func (db *DB) TrimWAL(ctx context.Context) (bool, error) {
	wal, err := db.WALSize()
	if err != nil || wal == 0 {
		return false, err
	}
	free, err := FreeSpace(db.Path)
	if errors.Is(err, ErrFreeSpaceUnknown) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if wal*4 <= free {
		return false, nil
	}
	return true, db.Checkpoint(ctx)
}
