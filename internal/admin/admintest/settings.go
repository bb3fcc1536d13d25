package admintest

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/store"
)

// OpenSettings opens a real settings store on a new SQLite database in a temporary directory, seeded with
// seed as generation 1 and clocked at Now, and closes the database when the test ends.
func OpenSettings(t testing.TB, seed map[string]string) *settings.Store {
	t.Helper()
	db, err := store.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := settings.Open(t.Context(), db, seed, Now)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TLSRPTCheck stands for the report sender's check of the settings (the daemon registers the real one): it
// refuses a TLSRPT.ContactInfo without "@", and TLSRPT.DKIMKeyFile without TLSRPT.DKIMSelector.
var TLSRPTCheck = settings.Check{Component: "tlsrpt", Check: func(s settings.Snapshot) error {
	if c := s.Get("TLSRPT.ContactInfo"); c != "" && !strings.Contains(c, "@") {
		return &settings.KeyError{Key: "TLSRPT.ContactInfo", Err: fmt.Errorf("%q has no domain", c)}
	}
	if s.Get("TLSRPT.DKIMKeyFile") != "" && s.Get("TLSRPT.DKIMSelector") == "" {
		return &settings.KeyError{Key: "TLSRPT.DKIMSelector", Err: errors.New("required with TLSRPT.DKIMKeyFile")}
	}
	return nil
}}
