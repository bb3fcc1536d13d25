package settings

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), nil)
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
}

// A rollback to a generation the component refuses is refused; a commit that leaves an existing failure as
// it is (the generation in force is refused for the same reason) goes through, so that it cannot block an
// unrelated change.
func TestComponentCheckRollbackAndExistingFailure(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), nil)
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
	if _, err := s.Rollback(ctx, bad.Generation, "", "t"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "TLSRPT.ContactInfo") {
		t.Fatalf("Rollback to the refused generation = %v, want ErrRefused naming TLSRPT.ContactInfo", err)
	}
}
