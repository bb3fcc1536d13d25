package settings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mxgate/mxgate/internal/atomicfile"
)

// ErrUnavailable means the shared settings database (cluster mode) could not be reached: nothing was staged
// or committed, and the generation in force stays in force.
var ErrUnavailable = errors.New("the shared settings database is unreachable")

// Replica is a node's local copy of the generation in force, kept in a file of its data directory when the
// settings live in a database the cluster shares. Every generation the node puts in force is written to it,
// so that a node that starts while that database is unreachable runs the last generation it knew, never the
// bootstrap file's seed nor the defaults.
type Replica struct {
	Path string
}

type replicaDoc struct {
	Generation int               `json:"generation"`
	Values     map[string]string `json:"values"`
}

// Save writes snap durably, replacing the copy.
func (r Replica) Save(snap Snapshot) error {
	b, err := json.Marshal(replicaDoc(snap))
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(r.Path, b, 0o600); err != nil {
		return fmt.Errorf("settings: local copy %s: %w", r.Path, err)
	}
	return nil
}

// Load reads the copy; the error wraps fs.ErrNotExist when there is none.
func (r Replica) Load() (Snapshot, error) {
	b, err := os.ReadFile(r.Path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("settings: local copy: %w", err)
	}
	var doc replicaDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return Snapshot{}, fmt.Errorf("settings: local copy %s: %w", r.Path, err)
	}
	if doc.Generation <= 0 {
		return Snapshot{}, fmt.Errorf("settings: local copy %s: no generation", r.Path)
	}
	if doc.Values == nil {
		doc.Values = map[string]string{}
	}
	return Snapshot(doc), nil
}

// OpenShared opens the settings kept in st, a storage the nodes of a cluster share, with rep as the node's
// local copy. When st answers, it is OpenStorage, and rep is kept up to date from then on. When it does not
// and rep holds a generation, the Store runs that generation: offline is then the reason st could not be
// read, err is nil, and staging and commits fail with ErrUnavailable until st answers again; Reload (run by
// Follow) brings the node back in line then. Without a local copy the error is returned: a node never runs a
// generation it cannot know. In both cases a failure to reach st is reported as ErrUnavailable from then on.
func OpenShared(ctx context.Context, st Storage, seed map[string]string, now func() time.Time, rep Replica) (s *Store, offline error, err error) {
	shared := &sharedStorage{Storage: st}
	s, err = OpenStorage(ctx, shared, seed, now)
	if err == nil {
		s.replica = &rep
		if err := rep.Save(s.Current()); err != nil {
			return nil, nil, err
		}
		shared.current = s.Current
		return s, nil, nil
	}
	s, lerr := openReplica(shared, now, rep)
	if lerr != nil {
		return nil, nil, fmt.Errorf("%w; and %w", err, lerr)
	}
	return s, err, nil
}

// OpenReplica opens the settings of st, a storage the nodes of a cluster share, from the node's local copy
// rep without reading st: for a node that starts while st is unreachable. See OpenShared.
func OpenReplica(st Storage, now func() time.Time, rep Replica) (*Store, error) {
	return openReplica(&sharedStorage{Storage: st}, now, rep)
}

func openReplica(shared *sharedStorage, now func() time.Time, rep Replica) (*Store, error) {
	snap, err := rep.Load()
	if err != nil {
		return nil, fmt.Errorf("no local copy of the settings to start with: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{st: shared, now: now, replica: &rep, current: snap}
	shared.current = s.Current
	return s, nil
}

// sharedStorage is a shared Storage as OpenShared uses it: its migrations run before its first use when the
// node started without reaching it, and its failures to answer are ErrUnavailable.
type sharedStorage struct {
	Storage
	current func() Snapshot

	mu       sync.Mutex
	migrated bool
}

func (s *sharedStorage) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.migrated {
		return nil
	}
	if err := s.Storage.Migrate(ctx); err != nil {
		return s.unavailable(err)
	}
	s.migrated = true
	return nil
}

// unavailable wraps err with ErrUnavailable when it is the shared database not answering (no connection, a
// network failure, a timeout) rather than an answer from it or a refusal of the settings themselves.
func (s *sharedStorage) unavailable(err error) error {
	if err == nil || (!connectionFailure(err) && answered(err)) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoChanges) ||
		errors.Is(err, ErrRefused) || errors.Is(err, ErrStaged) || errors.Is(err, ErrNoGeneration) ||
		errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrInvalidValue) || errors.Is(err, errSeeded) ||
		errors.Is(err, errInForce) || errors.Is(err, context.Canceled) {
		return err
	}
	gen := 0
	if s.current != nil {
		gen = s.current().Generation
	}
	return fmt.Errorf("settings: %w (generation %d stays in force on this node): %w", ErrUnavailable, gen, err)
}

// unchanged is unavailable for the calls that change the storage: it says that nothing was changed.
func (s *sharedStorage) unchanged(err error) error {
	if err = s.unavailable(err); errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("nothing was changed: %w", err)
	}
	return err
}

func (s *sharedStorage) Migrate(ctx context.Context) error { return s.ready(ctx) }

func (s *sharedStorage) Latest(ctx context.Context) (Generation, error) {
	if err := s.ready(ctx); err != nil {
		return Generation{}, err
	}
	g, err := s.Storage.Latest(ctx)
	return g, s.unavailable(err)
}

func (s *sharedStorage) History(ctx context.Context) ([]Generation, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	h, err := s.Storage.History(ctx)
	return h, s.unavailable(err)
}

func (s *sharedStorage) Stage(ctx context.Context, changes ...Staged) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.unchanged(s.Storage.Stage(ctx, changes...))
}

func (s *sharedStorage) ReplaceStaged(ctx context.Context, changes []Staged) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.unchanged(s.Storage.ReplaceStaged(ctx, changes))
}

func (s *sharedStorage) Staged(ctx context.Context) ([]Staged, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	st, err := s.Storage.Staged(ctx)
	return st, s.unavailable(err)
}

func (s *sharedStorage) DiscardStaged(ctx context.Context, changes []Staged) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.unchanged(s.Storage.DiscardStaged(ctx, changes))
}

func (s *sharedStorage) Commit(ctx context.Context, build func(Generation, []Staged) (Generation, error)) (Generation, error) {
	if err := s.ready(ctx); err != nil {
		return Generation{}, err
	}
	g, err := s.Storage.Commit(ctx, build)
	return g, s.unchanged(err)
}

// connectionFailure reports whether err is a failure to connect, or the server ending the connection
// (SQLSTATE class 08, or an administrator's or crash shutdown, 57P01 to 57P03).
func connectionFailure(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P0"))
}

// answered reports whether err is the server's answer to a statement.
func answered(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}
