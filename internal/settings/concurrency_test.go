package settings

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stagesDuringHistory is a Storage on which another administrator's change is staged, through the same
// database, when History is read: between a rollback's look at the generations and its transaction.
type stagesDuringHistory struct {
	Storage
	once   sync.Once
	change Staged
}

func (s *stagesDuringHistory) History(ctx context.Context) ([]Generation, error) {
	var err error
	s.once.Do(func() { err = s.Storage.Stage(ctx, s.change) })
	if err != nil {
		return nil, err
	}
	return s.Storage.History(ctx)
}

// TestRollbackNeverDropsAChangeStagedMeanwhile shows that a change staged while a rollback runs is judged
// with the staged changes in the rollback's transaction: refused (ErrStaged) by default, and listed as
// discarded when the rollback discards; never dropped unseen.
func TestRollbackNeverDropsAChangeStagedMeanwhile(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		change := Staged{Key: "TLSRPT.OrganizationName", Value: "Staged meanwhile"}
		st := &stagesDuringHistory{Storage: at(t), change: change}
		s, err := OpenStorage(ctx, st, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "Sender.EnableMTASTS", "false"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "generation 2", "alice"); err != nil {
			t.Fatal(err)
		}

		if _, err := s.Rollback(ctx, 1, "", "bob", RefuseStaged); !errors.Is(err, ErrStaged) {
			t.Fatalf("Rollback = %v, want ErrStaged for the change staged meanwhile", err)
		}
		if d, err := s.Diff(ctx); err != nil || len(d) != 1 || d[0].Key != change.Key {
			t.Fatalf("staged after the refused rollback = %+v, %v; want the change kept", d, err)
		}

		res, err := s.Rollback(ctx, 1, "", "bob", DiscardStaged)
		if err != nil {
			t.Fatal(err)
		}
		want := []Change{{Key: change.Key, New: change.Value, NewSet: true}}
		if d := cmp.Diff(want, res.Discarded); d != "" {
			t.Errorf("Discarded (-want +got):\n%s", d)
		}
		if res.Generation != 3 || !res.Bool("Sender.EnableMTASTS") {
			t.Errorf("rollback = %+v, want generation 3 with generation 1's settings", res.Snapshot)
		}
	})
}

// TestConcurrentSetAndCommitLoseNothing runs administrators staging and committing at once (run it with
// -race): every change staged is either committed or still staged, never dropped, and the watchers see the
// generations in order, ending with the one in force.
func TestConcurrentSetAndCommitLoseNothing(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		var (
			mu   sync.Mutex
			seen []int
		)
		s.Watch(func(snap Snapshot) {
			mu.Lock()
			seen = append(seen, snap.Generation)
			mu.Unlock()
		})

		const admins, changes = 4, 8
		var wg sync.WaitGroup
		errs := make(chan error, admins*changes*2)
		for a := range admins {
			wg.Go(func() {
				for i := range changes {
					key := fmt.Sprintf("Domain.a%d-%d.example.TLS", a, i)
					if err := s.Set(ctx, key, "required"); err != nil {
						errs <- fmt.Errorf("set %s: %w", key, err)
						return
					}
					if _, err := s.Commit(ctx, key, "admin"); err != nil && !errors.Is(err, ErrNoChanges) {
						errs <- fmt.Errorf("commit %s: %w", key, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Whatever a commit left staged is still there to be committed.
		if _, err := s.Commit(ctx, "the rest", "admin"); err != nil && !errors.Is(err, ErrNoChanges) {
			t.Fatal(err)
		}
		cur := s.Current()
		for a := range admins {
			for i := range changes {
				key := fmt.Sprintf("Domain.a%d-%d.example.TLS", a, i)
				if got := cur.Get(key); got != "required" {
					t.Errorf("%s = %q in generation %d, want required: a staged change was lost", key, got, cur.Generation)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(seen); i++ {
			if seen[i] <= seen[i-1] {
				t.Fatalf("watchers saw generations %v, want increasing", seen)
			}
		}
		if len(seen) == 0 || seen[len(seen)-1] != cur.Generation {
			t.Errorf("watchers saw %v, last want %d (in force)", seen, cur.Generation)
		}
	})
}
