package console_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/console/consoletest"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// adminFile writes a password file holding the administrator console.BootstrapAccount with
// consoletest.Password.
func adminFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), console.PasswordFileName)
	if err := console.WritePassword(path, consoletest.Password, 1000); err != nil {
		t.Fatal(err)
	}
	return path
}

// sharedAccounts opens the console accounts of the PostgreSQL database dsn through a pool of its own (as a
// node does), seeded from a password file holding the administrator when no node has seeded it.
func sharedAccounts(t *testing.T, dsn string) *console.PostgresAccounts {
	t.Helper()
	pg, err := store.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	s := &console.PostgresAccounts{PG: pg, Iterations: 1000}
	if _, err := s.Seed(t.Context(), adminFile(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

// accountStores are the two implementations of console.AccountStore, each holding the administrator
// console.BootstrapAccount with consoletest.Password.
var accountStores = []struct {
	name string
	open func(t *testing.T) console.AccountStore
}{
	{"file", func(t *testing.T) console.AccountStore {
		return console.PasswordFile{Path: adminFile(t), Iterations: 1000}
	}},
	{"postgres", func(t *testing.T) console.AccountStore { return sharedAccounts(t, storetest.PostgresDSN(t)) }},
}

// TestAccountStoreContract: both stores check and refuse the same things, with the same errors, keep the
// last administrator, and log the console in.
func TestAccountStoreContract(t *testing.T) {
	for _, st := range accountStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := st.open(t)
			const pw = "a long enough password"
			for _, tt := range []struct {
				a    admin.NewAccount
				want error
			}{
				{admin.NewAccount{Name: "ops", Role: "administrator", Password: pw}, nil},
				{admin.NewAccount{Name: "watch", Role: "viewer", Password: pw}, nil},
				{admin.NewAccount{Name: "ops", Role: "viewer", Password: pw}, admin.ErrAccountExists},
				{admin.NewAccount{Name: "Bad Name", Role: "viewer", Password: pw}, admin.ErrInvalidAccount},
				{admin.NewAccount{Name: "short", Role: "viewer", Password: "short"}, admin.ErrInvalidAccount},
				{admin.NewAccount{Name: "boss", Role: "owner", Password: pw}, admin.ErrInvalidAccount},
			} {
				if err := s.AddAccount(ctx, tt.a); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Errorf("add %+v: %v, want %v", tt.a.Name, err, tt.want)
				}
			}
			accts, err := s.Accounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []admin.Account{{Name: "admin", Role: "administrator"}, {Name: "ops", Role: "administrator"}, {Name: "watch", Role: "viewer"}}
			if diff := cmp.Diff(want, accts); diff != "" {
				t.Errorf("accounts (-want +got):\n%s", diff)
			}
			if err := s.SetAccountPassword(ctx, "nobody", pw); !errors.Is(err, admin.ErrNoAccount) {
				t.Errorf("password of a missing account: %v", err)
			}
			if err := s.SetAccountPassword(ctx, "ops", "short"); !errors.Is(err, admin.ErrInvalidAccount) {
				t.Errorf("short password: %v", err)
			}
			if err := s.RemoveAccount(ctx, "nobody"); !errors.Is(err, admin.ErrNoAccount) {
				t.Errorf("remove a missing account: %v", err)
			}
			if err := s.RemoveAccount(ctx, "admin"); err != nil {
				t.Errorf("remove one of two administrators: %v", err)
			}
			if err := s.RemoveAccount(ctx, "ops"); !errors.Is(err, admin.ErrLastAdministrator) {
				t.Errorf("remove the last administrator: %v", err)
			}
			if err := s.RemoveAccount(ctx, "watch"); err != nil {
				t.Errorf("remove a viewer: %v", err)
			}
			if err := s.SetAccountPassword(ctx, "ops", "the new ops password"); err != nil {
				t.Fatal(err)
			}
			// The console logs in through the store, with the password just set.
			env := consoletest.NewOn(t, s)
			b := loginAs(t, env, "ops", "the new ops password")
			mustContain(t, b.get("/account"), "Logged in as <strong>ops</strong>, administrator")
		})
	}
}

// TestSharedAccountsAcrossNodes: two consoles on one PostgreSQL database, each through its own pool, as two
// nodes: an account added on one logs in on the other, and a password changed on one ends the sessions of
// that account on the other.
func TestSharedAccountsAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	node1 := consoletest.NewOn(t, sharedAccounts(t, dsn))
	node2 := consoletest.NewOn(t, sharedAccounts(t, dsn))

	admin1 := loginAs(t, node1, console.BootstrapAccount, consoletest.Password)
	p := admin1.post("/accounts/add", url.Values{"name": {"carol"}, "role": {"viewer"}, "password": {viewerPW}})
	mustContain(t, admin1.get(p.location), "Account carol (viewer) added.")

	carol := loginAs(t, node2, "carol", viewerPW)
	mustContain(t, carol.get("/account"), "Logged in as <strong>carol</strong>, viewer")

	// A password set on node 1 ends carol's session on node 2.
	p = admin1.post("/accounts/password", url.Values{"name": {"carol"}, "password": {"carol's second password"}})
	mustContain(t, admin1.get(p.location), "New password of carol set")
	if p := carol.get("/settings"); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("carol's session on node 2 after her password changed on node 1: %d → %q, want a redirect to /login", p.code, p.location)
	}
	loginAs(t, node2, "carol", "carol's second password")

	// The last administrator stays, whichever node asks.
	admin2 := loginAs(t, node2, console.BootstrapAccount, consoletest.Password)
	p = admin2.post("/accounts/remove", url.Values{"name": {console.BootstrapAccount}})
	mustContain(t, admin2.get(p.location), "the last administrator cannot be removed")
}

// TestSeedSharedAccountsOnce: the first node to seed the shared table copies its password file's accounts
// in; a later node's file is not copied; an empty table without a file gets an administrator with a new
// password.
func TestSeedSharedAccountsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	pg, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	s := &console.PostgresAccounts{PG: pg, Iterations: 1000}

	first := adminFile(t)
	if err := console.AddAccount(first, "watch", console.Viewer, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	got, err := s.Seed(ctx, first)
	if err != nil || got != (console.Seeded{Copied: 2}) {
		t.Fatalf("first seed: %+v, %v; want 2 accounts copied", got, err)
	}
	second := adminFile(t)
	if err := console.AddAccount(second, "other", console.Administrator, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Seed(ctx, second); err != nil || got != (console.Seeded{}) {
		t.Fatalf("second seed: %+v, %v; want nothing done", got, err)
	}
	accts, err := s.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]admin.Account{{Name: "admin", Role: "administrator"}, {Name: "watch", Role: "viewer"}}, accts); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}
	// The copied hashes log in.
	env := consoletest.NewOn(t, s)
	loginAs(t, env, "watch", viewerPW)

	// A cluster whose first node had no password file: one administrator, with a password to show.
	pg2, err := store.OpenPostgres(ctx, storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg2.Close)
	fresh := &console.PostgresAccounts{PG: pg2}
	got, err = fresh.Seed(ctx, filepath.Join(t.TempDir(), console.PasswordFileName))
	if err != nil || got.Password == "" || got.Copied != 0 {
		t.Fatalf("seed without a file: %+v, %v; want a new administrator's password", got, err)
	}
	if accts, err := fresh.Accounts(ctx); err != nil || len(accts) != 1 || accts[0].Name != console.BootstrapAccount {
		t.Errorf("accounts after seeding without a file: %v, %v", accts, err)
	}
}

// TestSessionRefusedWhenAccountsUnreadable: a session goes on with its role while the shared database does
// not answer only for console.AccountsGrace after its account was last read; when the database answers
// with an error (here a missing table, after the account was removed on another node), it is refused at
// once.
func TestSessionRefusedWhenAccountsUnreadable(t *testing.T) {
	t.Parallel()
	const pw = "the ops password, long enough"
	setUp := func(t *testing.T) (string, *consoletest.Env, *browser) {
		dsn := storetest.PostgresDSN(t)
		s := sharedAccounts(t, dsn)
		if err := s.AddAccount(t.Context(), admin.NewAccount{Name: "ops", Role: "administrator", Password: pw}); err != nil {
			t.Fatal(err)
		}
		env := consoletest.NewOn(t, s)
		return dsn, env, loginAs(t, env, "ops", pw)
	}
	refused := func(t *testing.T, b *browser, when string) {
		t.Helper()
		if p := b.get("/settings"); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
			t.Errorf("session %s: %d → %q, want a redirect to /login", when, p.code, p.location)
		}
	}
	t.Run("error", func(t *testing.T) {
		t.Parallel()
		dsn, _, b := setUp(t)
		other := sharedAccounts(t, dsn)
		if err := other.RemoveAccount(t.Context(), "ops"); err != nil {
			t.Fatal(err)
		}
		if _, err := other.PG.Exec(t.Context(), `ALTER TABLE console_accounts RENAME TO console_accounts_moved`); err != nil {
			t.Fatal(err)
		}
		refused(t, b, "whose account was removed, the table then missing")
	})
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		dsn, env, b := setUp(t)
		storetest.CutOff(t, dsn)
		if p := b.get("/settings"); p.code != http.StatusOK {
			t.Fatalf("session just after the database stopped answering: %d → %q, want the page", p.code, p.location)
		}
		env.Clock.Advance(console.AccountsGrace / 2)
		if p := b.get("/settings"); p.code != http.StatusOK {
			t.Fatalf("session within the grace period: %d → %q, want the page", p.code, p.location)
		}
		env.Clock.Advance(console.AccountsGrace/2 + time.Second)
		refused(t, b, "past the grace period without the database")
	})
}

// TestSessionLookupBounded: a shared database that does not answer in time (here: the accounts table
// locked by another node's transaction) neither hangs console requests nor ends sessions at once.
func TestSessionLookupBounded(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	s := sharedAccounts(t, dsn)
	env := consoletest.NewOn(t, s)
	b := loginAs(t, env, console.BootstrapAccount, consoletest.Password)
	b.c.Timeout = 30 * time.Second // far above console.AccountsTimeout: a hung request fails the test

	other := sharedAccounts(t, dsn)
	tx, err := other.PG.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `LOCK TABLE console_accounts IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if p := b.get("/settings"); p.code != http.StatusOK {
		t.Errorf("session while the accounts are locked: %d → %q, want the page (within the grace period)", p.code, p.location)
	}
	nb := newBrowser(t, env)
	nb.get("/login")
	if p := nb.post("/login", url.Values{"account": {"admin"}, "password": {consoletest.Password}, "next": {"/"}}); !strings.Contains(p.body, "cannot be read") {
		t.Errorf("login while the accounts are locked: %d, want 'cannot be read'\n%s", p.code, p.body)
	}
}

// TestSeedSeededTableIgnoresPasswordFile: a node whose password file cannot be read (here a directory in
// its place) still starts on a table another node filled: the file is not read then.
func TestSeedSeededTableIgnoresPasswordFile(t *testing.T) {
	t.Parallel()
	s := sharedAccounts(t, storetest.PostgresDSN(t))
	bad := t.TempDir()
	if got, err := s.Seed(t.Context(), bad); err != nil || got != (console.Seeded{}) {
		t.Errorf("seed of a filled table with an unreadable password file: %+v, %v; want nothing done", got, err)
	}
}

// TestSeedBootstrapHashUsesIterations: the first administrator's hash has the store's PBKDF2 cost.
func TestSeedBootstrapHashUsesIterations(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	s := &console.PostgresAccounts{PG: pg, Iterations: 1000}
	if got, err := s.Seed(t.Context(), filepath.Join(t.TempDir(), console.PasswordFileName)); err != nil || got.Password == "" {
		t.Fatalf("seed without a file: %+v, %v", got, err)
	}
	var h string
	if err := pg.QueryRow(t.Context(), `SELECT hash FROM console_accounts`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(h, "$"); len(parts) != 4 || parts[1] != "1000" {
		t.Errorf("bootstrap hash %q: want 1000 iterations", h)
	}
}
