package dkimkey

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/mxgate/mxgate/internal/store/storetest"
)

// eachStore runs f against every Store; open returns a new handle on the same storage each time, as another
// node or a restart would.
func eachStore(t *testing.T, f func(t *testing.T, open func() Store)) {
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tlsrpt-dkim.pem")
		f(t, func() Store { return FileStore{Path: path} })
	})
	t.Run("postgres", func(t *testing.T) {
		pg := storetest.Postgres(t)
		f(t, func() Store { return PostgresStore{PG: pg} })
	})
}

// TestStoreContractFirstKeyWins: with no key, Load says so; the first key stored is the one every later
// LoadOrStore returns, whatever key it offers, and what a new handle loads.
func TestStoreContractFirstKeyWins(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() Store) {
		ctx := context.Background()
		s := open()
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load with no key: %v, want fs.ErrNotExist", err)
		}
		first, err := New()
		if err != nil {
			t.Fatal(err)
		}
		second, err := New()
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.LoadOrStore(ctx, first)
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("first LoadOrStore = %v; want the key stored", err)
		}
		other := open()
		if err := other.Migrate(ctx); err != nil {
			t.Fatalf("migrating again: %v", err)
		}
		if got, err := other.LoadOrStore(ctx, second); err != nil || !bytes.Equal(got, first) {
			t.Errorf("second LoadOrStore = %v; want the first key, not its own", err)
		}
		if got, err := other.Load(ctx); err != nil || !bytes.Equal(got, first) {
			t.Errorf("Load = %v; want the first key", err)
		}
	})
}
