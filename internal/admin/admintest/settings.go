package admintest

import (
	"path/filepath"
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
