package settings

import (
	"context"
	"errors"
)

// Storage keeps the committed generations and the staged changes. Two implementations exist: SQLiteStorage,
// the embedded database of a single node, and PostgresStorage, the database a cluster of nodes shares. Both
// pass the same contract tests (storage_test.go).
type Storage interface {
	// Migrate brings the storage's schema up to date (versioned migrations, run at start).
	Migrate(ctx context.Context) error
	// Latest returns the newest committed generation; its Number is 0 when there is none yet.
	Latest(ctx context.Context) (Generation, error)
	// History returns every generation, newest first.
	History(ctx context.Context) ([]Generation, error)
	// Stage upserts staged changes, leaving other staged keys as they are.
	Stage(ctx context.Context, changes ...Staged) error
	// ReplaceStaged makes changes the only staged changes, atomically.
	ReplaceStaged(ctx context.Context, changes []Staged) error
	// Staged returns the staged changes, sorted by key.
	Staged(ctx context.Context) ([]Staged, error)
	// DiscardStaged drops the given staged changes, each only while its key still holds the same staged
	// value: a change staged again meanwhile is kept.
	DiscardStaged(ctx context.Context, changes []Staged) error
	// Commit runs build with the newest generation and the staged changes inside one transaction that no
	// other commit (from this node or another) interleaves with, stores the generation build returns as the
	// next number, drops the staged changes build was given (a key staged again meanwhile stays staged) and
	// returns the stored generation. An error from build is returned as is and nothing changes.
	Commit(ctx context.Context, build func(latest Generation, staged []Staged) (Generation, error)) (Generation, error)
}

// Staged is one staged change as stored: key = Value, or the key's removal when Unset.
type Staged struct {
	Key   string
	Value string
	Unset bool
}

// errSeeded tells Open's seeding commit that another node (or an earlier start) created generation 1.
var errSeeded = errors.New("settings: already seeded")
