package console

import (
	"context"
	"errors"

	"github.com/mxgate/mxgate/internal/admin"
)

// AccountStore keeps the console's accounts: PasswordFile (the data directory's console-password, a single
// node) or PostgresAccounts (the database a cluster shares, so that an account works on every node). The
// console logs in, checks sessions and changes passwords through it; the admin API's /api/v1/accounts uses
// the same store.
type AccountStore interface {
	admin.AccountsAPI
	// lookup returns account name with its hash: ErrNoAccount when the store lacks it, ErrNoPassword when
	// it holds no account at all.
	lookup(ctx context.Context, name string) (accountEntry, error)
	// anyHash returns a stored hash, to hash a password against for an unknown name, so that the time a
	// login takes does not tell which names exist; "" when there is none.
	anyHash(ctx context.Context) string
	// where names the store for messages (the file's path, "the shared database").
	where() string
}

var (
	_ AccountStore = PasswordFile{}
	_ AccountStore = (*PostgresAccounts)(nil)
)

func (f PasswordFile) lookup(_ context.Context, name string) (accountEntry, error) {
	return lookupAccount(f.Path, name)
}

func (f PasswordFile) anyHash(context.Context) string {
	es, err := readAccounts(f.Path)
	if err != nil || len(es) == 0 {
		return ""
	}
	return es[0].hash
}

func (f PasswordFile) where() string { return f.Path }

// checkStoredAccount reports whether password is account name's in s, and returns the account.
func checkStoredAccount(ctx context.Context, s AccountStore, name, password string) (accountEntry, bool, error) {
	e, err := s.lookup(ctx, name)
	if errors.Is(err, ErrNoAccount) {
		if h := s.anyHash(ctx); h != "" {
			checkHash(s.where(), h, password)
		}
		return accountEntry{}, false, err
	}
	if err != nil {
		return accountEntry{}, false, err
	}
	ok, err := checkHash(s.where(), e.hash, password)
	return e, ok, err
}
