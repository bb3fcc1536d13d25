package settings

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// contactCheck refuses a TLSRPT.ContactInfo without "@", and TLSRPT.DKIMKeyFile without TLSRPT.DKIMSelector,
// as a component's own construction would.
func contactCheck(s Snapshot) error {
	var errs []error
	if c := s.Get("TLSRPT.ContactInfo"); c != "" && !strings.Contains(c, "@") {
		errs = append(errs, &KeyError{Key: "TLSRPT.ContactInfo", Err: fmt.Errorf("%q is not an address", c)})
	}
	if s.Get("TLSRPT.DKIMKeyFile") != "" && s.Get("TLSRPT.DKIMSelector") == "" {
		errs = append(errs, &KeyError{Key: "TLSRPT.DKIMSelector", Err: errors.New("required with TLSRPT.DKIMKeyFile")})
	}
	return errors.Join(errs...)
}

// A value the component refuses is refused at staging, naming the key and the component; a generation that
// only the whole set of staged changes makes invalid is refused at commit, and nothing is committed.
func TestComponentCheckAtStagingAndCommit(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		s.AddCheck(Check{Component: "tlsrpt", Check: contactCheck})

		err := s.Set(ctx, "TLSRPT.ContactInfo", "notanemail")
		if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "TLSRPT.ContactInfo") || !strings.Contains(err.Error(), "tlsrpt refuses it") {
			t.Fatalf("Set(notanemail) = %v, want the key and the refusing component", err)
		}
		if err := s.Apply(ctx, map[string]string{"TLSRPT.ContactInfo": "nope"}); !errors.Is(err, ErrInvalidValue) {
			t.Fatalf("Apply(nope) = %v, want ErrInvalidValue", err)
		}
		if d, _ := s.Diff(ctx); len(d) != 0 {
			t.Fatalf("refused values were staged: %+v", d)
		}

		// The key file alone is fine to stage (the selector may come next); committing without it is not.
		if err := s.Set(ctx, "TLSRPT.DKIMKeyFile", "/k.pem"); err != nil {
			t.Fatalf("Set(DKIMKeyFile): %v", err)
		}
		gen := s.Current().Generation
		_, err = s.Commit(ctx, "sign reports", "t")
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "TLSRPT.DKIMSelector") || !strings.Contains(err.Error(), "tlsrpt") {
			t.Fatalf("Commit = %v, want ErrRefused naming tlsrpt and TLSRPT.DKIMSelector", err)
		}
		if s.Current().Generation != gen {
			t.Fatalf("a refused commit made generation %d", s.Current().Generation)
		}
		if err := s.Set(ctx, "TLSRPT.DKIMSelector", "r1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "sign reports", "t"); err != nil {
			t.Fatalf("Commit with the selector: %v", err)
		}
	})
}

// A rollback to a generation the component refuses is refused; a commit that leaves an existing failure as
// it is (the generation in force is refused for the same reason) goes through, so that it cannot block an
// unrelated change.
func TestComponentCheckRollbackAndExistingFailure(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		if err := s.Set(ctx, "TLSRPT.ContactInfo", "bad"); err != nil {
			t.Fatal(err)
		}
		bad, err := s.Commit(ctx, "before the check existed", "t")
		if err != nil {
			t.Fatal(err)
		}
		s.AddCheck(Check{Component: "tlsrpt", Check: contactCheck})
		if err := s.Set(ctx, "Sender.EnableMTASTS", "false"); err != nil {
			t.Fatalf("staging an unrelated key while the generation in force is refused: %v", err)
		}
		if _, err := s.Commit(ctx, "unrelated", "t"); err != nil {
			t.Fatalf("an unrelated commit while the generation in force is refused: %v", err)
		}
		if err := s.Set(ctx, "TLSRPT.ContactInfo", "ok@example.org"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "fix contact", "t"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rollback(ctx, bad.Generation, "", "t", RefuseStaged); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "TLSRPT.ContactInfo") {
			t.Fatalf("Rollback to the refused generation = %v, want ErrRefused naming TLSRPT.ContactInfo", err)
		}
	})
}

// A rollback never drops staged changes silently: it is refused while changes are staged, unless asked to
// discard them, and then says which it dropped. Rolling back to the settings in force makes no generation.
func TestRollbackWithStagedChangesAndNoOp(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		if err := s.Set(ctx, "TLSRPT.OnlyFailures", "true"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "only failures", "t"); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "Sender.EnableMTASTS", "false"); err != nil {
			t.Fatal(err)
		}
		_, err := s.Rollback(ctx, 1, "", "t", RefuseStaged)
		if !errors.Is(err, ErrStaged) || !strings.Contains(err.Error(), "Sender.EnableMTASTS") {
			t.Fatalf("Rollback with a staged change = %v, want ErrStaged naming the key", err)
		}
		if d, _ := s.Diff(ctx); len(d) != 1 || s.Current().Generation != 2 {
			t.Fatalf("a refused rollback changed something: staged %+v, generation %d", d, s.Current().Generation)
		}
		res, err := s.Rollback(ctx, 1, "", "t", DiscardStaged)
		if err != nil {
			t.Fatal(err)
		}
		if res.Generation != 3 || res.InForce || len(res.Discarded) != 1 || res.Discarded[0].Key != "Sender.EnableMTASTS" {
			t.Fatalf("Rollback discarding = %+v, want generation 3 and the discarded change", res)
		}
		if d, _ := s.Diff(ctx); len(d) != 0 {
			t.Fatalf("staged after a discarding rollback: %+v", d)
		}

		// Generation 1's settings are in force now (generation 3): rolling back to either is a no-op.
		for _, gen := range []int{1, 3} {
			res, err := s.Rollback(ctx, gen, "", "t", RefuseStaged)
			if err != nil || !res.InForce || res.Generation != 3 {
				t.Fatalf("Rollback(%d) to the settings in force = %+v, %v; want InForce at generation 3", gen, res, err)
			}
		}
		hist, err := s.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 3 {
			t.Errorf("%d generations after no-op rollbacks, want 3", len(hist))
		}
	})
}
