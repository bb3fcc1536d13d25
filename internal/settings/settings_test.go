package settings

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// storageAt opens a new handle on one database each time it is called, as a restarted node (or another node
// of a cluster) would.
type storageAt func(t *testing.T) Storage

// eachStorage runs the contract test f against every Storage implementation: the embedded SQLite database and
// PostgreSQL (on the server MXGATE_TEST_POSTGRES names, a database per test).
func eachStorage(t *testing.T, f func(t *testing.T, at storageAt)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.db")
		f(t, func(t *testing.T) Storage {
			db, err := store.OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return SQLiteStorage{DB: db}
		})
	})
	t.Run("postgres", func(t *testing.T) { f(t, postgresAt(t)) })
}

// postgresAt creates a PostgreSQL database for the test and returns its opener.
func postgresAt(t *testing.T) storageAt {
	dsn := storetest.PostgresDSN(t)
	return func(t *testing.T) Storage {
		pg, err := store.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.Close)
		return PostgresStorage{PG: pg}
	}
}

func openStore(t *testing.T, at storageAt, seed map[string]string) *Store {
	t.Helper()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	s, err := OpenStorage(context.Background(), at(t), seed, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rules(t *testing.T, s Snapshot) map[string]tlspolicy.Rule {
	t.Helper()
	r, err := s.DomainRules()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSeedIsGenerationOne(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		s := openStore(t, at, map[string]string{"Sender.EnableMTASTS": "false", "Domain.Bücher.example.TLS": "required-verify"})
		cur := s.Current()
		if cur.Generation != 1 || cur.Bool("Sender.EnableMTASTS") || !cur.Bool("Controller.EnableTLSRPT") {
			t.Fatalf("generation 1 = %+v", cur)
		}
		if diff := cmp.Diff(map[string]tlspolicy.Rule{"xn--bcher-kva.example": {Level: tlspolicy.LevelRequiredVerify}}, rules(t, cur)); diff != "" {
			t.Errorf("domain rules (-want +got):\n%s", diff)
		}
	})
}

func TestBadSeedNamesTheKey(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		_, err := OpenStorage(context.Background(), at(t), map[string]string{"Sender.EnableMTAST": "true"}, nil)
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Open with an unknown seed key = %v, want ErrUnknownKey", err)
		}
	})
}

func TestStageDiffCommitRollback(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		var seen []int
		s.Watch(func(snap Snapshot) { seen = append(seen, snap.Generation) })

		if _, err := s.Commit(ctx, "nothing", "t"); !errors.Is(err, ErrNoChanges) {
			t.Fatalf("Commit with nothing staged = %v, want ErrNoChanges", err)
		}
		for _, kv := range [][2]string{{"Sender.EnableMTASTS", "false"}, {"Domain.example.com.TLS", "required-verify"}, {"TLSRPT.OrganizationName", "Acme"}} {
			if err := s.Set(ctx, kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		// Staged changes are not in force.
		if !s.Current().Bool("Sender.EnableMTASTS") {
			t.Fatal("a staged change took effect before the commit")
		}
		diff, err := s.Diff(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []Change{
			{Key: "Domain.example.com.TLS", New: "required-verify", NewSet: true},
			{Key: "Sender.EnableMTASTS", New: "false", NewSet: true},
			{Key: "TLSRPT.OrganizationName", New: "Acme", NewSet: true},
		}
		if d := cmp.Diff(want, diff); d != "" {
			t.Fatalf("diff (-want +got):\n%s", d)
		}
		snap, err := s.Commit(ctx, "tighten example.com", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if snap.Generation != 2 || snap.Bool("Sender.EnableMTASTS") || rules(t, snap)["example.com"] != (tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify}) {
			t.Fatalf("generation 2 = %+v", snap)
		}
		if d, _ := s.Diff(ctx); len(d) != 0 {
			t.Fatalf("staged changes left after commit: %+v", d)
		}

		if err := s.Unset(ctx, "TLSRPT.OrganizationName"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "default organisation", "alice"); err != nil {
			t.Fatal(err)
		}
		if got := s.Current().Get("TLSRPT.OrganizationName"); got != "" {
			t.Fatalf("after unset = %q, want the default", got)
		}

		res, err := s.Rollback(ctx, 1, "", "bob", RefuseStaged)
		if err != nil {
			t.Fatal(err)
		}
		snap = res.Snapshot
		if snap.Generation != 4 || !snap.Bool("Sender.EnableMTASTS") || len(rules(t, snap)) != 0 {
			t.Fatalf("rollback to 1 = %+v", snap)
		}
		hist, err := s.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 4 || hist[0].RollbackOf != 1 || hist[0].Note != "rollback to generation 1" || hist[2].Author != "alice" {
			t.Fatalf("history = %+v", hist)
		}
		if _, err := s.Rollback(ctx, 99, "", "bob", RefuseStaged); !errors.Is(err, ErrNoGeneration) {
			t.Errorf("rollback to 99 = %v, want ErrNoGeneration", err)
		}
		if d := cmp.Diff([]int{2, 3, 4}, seen); d != "" {
			t.Errorf("watchers saw (-want +got):\n%s", d)
		}

		// Generations survive a restart.
		s2 := openStore(t, at, map[string]string{"Sender.EnableMTASTS": "false"})
		if s2.Current().Generation != 4 || !s2.Current().Bool("Sender.EnableMTASTS") {
			t.Errorf("after reopen = %+v, want generation 4 (the seed applies only to a new store)", s2.Current())
		}
	})
}

func TestRefusesUnknownAndIllTyped(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		tests := []struct {
			key, value string
			want       error
		}{
			{"Sender.EnableMTASTs", "true", ErrUnknownKey},
			{"Sender.EnableMTASTS", "yes please", ErrInvalidValue},
			{"TLSRPT.MaxDestinations", "-1", ErrInvalidValue},
			{"TLSRPT.OrganizationName", "Acme\r\nBcc: x", ErrInvalidValue},
			{"Domain.example.com.TLS", "secure", ErrInvalidValue},
			{"Domain.example.com.TLS", "required-verify please", ErrInvalidValue},
			{"Domain.example.com.TLS", "", ErrInvalidValue},
			{"Sender.EnableDANE", "maybe", ErrInvalidValue},
		}
		for _, tc := range tests {
			if err := s.Set(ctx, tc.key, tc.value); !errors.Is(err, tc.want) {
				t.Errorf("Set(%q, %q) = %v, want %v", tc.key, tc.value, err, tc.want)
			}
		}
		if err := s.Set(ctx, "Domain.bad..domain.TLS", "required"); err == nil {
			t.Error("a malformed domain rule was accepted")
		}
		if d, _ := s.Diff(ctx); len(d) != 0 {
			t.Errorf("refused changes were staged: %+v", d)
		}
	})
}

// TestDomainRulesUseTheTLSVocabulary: every level tlspolicy knows (dane and dane-only included) and the
// override form are accepted, stored in canonical form and read back as typed rules.
func TestDomainRulesUseTheTLSVocabulary(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, nil)
		want := map[string]tlspolicy.Rule{}
		for i, l := range tlspolicy.Levels() {
			dom := fmt.Sprintf("d%d.example", i)
			if err := s.Set(ctx, "Domain."+dom+".TLS", string(l)); err != nil {
				t.Fatal(err)
			}
			want[dom] = tlspolicy.Rule{Level: l}
		}
		if err := s.Set(ctx, "Domain.partner.example.TLS", "  opportunistic   override "); err != nil {
			t.Fatal(err)
		}
		want["partner.example"] = tlspolicy.Rule{Level: tlspolicy.LevelOpportunistic, Override: true}
		snap, err := s.Commit(ctx, "rules", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if got := snap.Values["Domain.partner.example.TLS"]; got != "opportunistic override" {
			t.Errorf("stored override rule = %q, want the canonical %q", got, "opportunistic override")
		}
		if diff := cmp.Diff(want, rules(t, snap)); diff != "" {
			t.Errorf("rules (-want +got):\n%s", diff)
		}
	})
}

// TestDomainRulesRefuseDamagedValues: a stored value that does not parse is an error naming its key, not a
// rule dropped.
func TestDomainRulesRefuseDamagedValues(t *testing.T) {
	snap := Snapshot{Generation: 7, Values: map[string]string{"Domain.a.example.TLS": "required", "Domain.b.example.TLS": "secure"}}
	_, err := snap.DomainRules()
	if err == nil || !strings.Contains(err.Error(), "Domain.b.example.TLS") {
		t.Fatalf("DomainRules() error = %v, want one naming Domain.b.example.TLS", err)
	}
}

func TestApplyStagesWholeDocument(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		s := openStore(t, at, map[string]string{"Domain.old.example.TLS": "required"})
		if err := s.Apply(ctx, map[string]string{"Sender.EnableMTASTS": "true", "Domain.new.example.TLS": "required-verify"}); err != nil {
			t.Fatal(err)
		}
		diff, _ := s.Diff(ctx)
		want := []Change{
			{Key: "Domain.new.example.TLS", New: "required-verify", NewSet: true},
			{Key: "Domain.old.example.TLS", Old: "required", OldSet: true},
			{Key: "Sender.EnableMTASTS", New: "true", NewSet: true},
		}
		if d := cmp.Diff(want, diff); d != "" {
			t.Fatalf("diff (-want +got):\n%s", d)
		}
		if err := s.Apply(ctx, map[string]string{"Bogus.Key": "1", "Sender.EnableMTASTS": "maybe"}); err == nil {
			t.Fatal("Apply with bad keys succeeded")
		}
		// A refused document leaves the earlier staging untouched.
		if d, _ := s.Diff(ctx); len(d) != 3 {
			t.Errorf("after a refused Apply, %d staged changes, want 3", len(d))
		}
	})
}

// TestCommitBuildsOnTheNewestGeneration: two stores on one database (two nodes of a cluster, or a node and
// the CLI's) commit in turn; the second store's commit keeps the first one's change although its own
// snapshot was older, and Reload puts the other store's commit in force and tells the watchers.
func TestCommitBuildsOnTheNewestGeneration(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		ctx := context.Background()
		a := openStore(t, at, map[string]string{"TLSRPT.OrganizationName": "Acme"})
		b := openStore(t, at, map[string]string{"TLSRPT.OrganizationName": "seed of a later start"})
		if a.Current().Generation != 1 || b.Current().Get("TLSRPT.OrganizationName") != "Acme" {
			t.Fatalf("second open = %+v, want generation 1 seeded once by the first", b.Current())
		}
		var seen []int
		b.Watch(func(s Snapshot) { seen = append(seen, s.Generation) })

		if err := a.Set(ctx, "Sender.EnableMTASTS", "false"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Commit(ctx, "node a", "alice"); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(ctx, "Domain.example.com.TLS", "required"); err != nil {
			t.Fatal(err)
		}
		snap, err := b.Commit(ctx, "node b", "bob")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"TLSRPT.OrganizationName": "Acme", "Sender.EnableMTASTS": "false", "Domain.example.com.TLS": "required"}
		if snap.Generation != 3 || !cmp.Equal(want, snap.Values) {
			t.Fatalf("b's commit = %+v, want generation 3 with %v", snap, want)
		}
		got, err := a.Reload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Generation != 3 || a.Current().Generation != 3 {
			t.Errorf("a after Reload runs generation %d, want 3", a.Current().Generation)
		}
		// b commits generation 3 itself; a Reload that finds it changes nothing and tells nobody twice.
		if _, err := b.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]int{3}, seen); d != "" {
			t.Errorf("b's watchers saw (-want +got):\n%s", d)
		}
	})
}
