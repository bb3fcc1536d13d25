package console

import (
	"context"
	"fmt"

	"github.com/mxgate/mxgate/internal/admin"
)

// PasswordFile is the account store of a password file (the data directory's console-password), as the
// admin API's /api/v1/accounts uses it. Its errors wrap admin.ErrNoAccount, admin.ErrAccountExists,
// admin.ErrLastAdministrator and admin.ErrInvalidAccount.
type PasswordFile struct {
	Path string
	// Iterations is the PBKDF2 cost of new hashes; 0 means DefaultIterations.
	Iterations int
}

var _ admin.AccountsAPI = PasswordFile{}

// Accounts lists the accounts in file order.
func (f PasswordFile) Accounts(context.Context) ([]admin.Account, error) {
	accts, err := Accounts(f.Path)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Account, len(accts))
	for i, a := range accts {
		out[i] = admin.Account{Name: a.Name, Role: string(a.Role)}
	}
	return out, nil
}

// AddAccount checks the new account's name, role and password length, then adds it.
func (f PasswordFile) AddAccount(_ context.Context, a admin.NewAccount) error {
	role, err := ParseRole(a.Role)
	if err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalidAccount, err)
	}
	if err := ValidAccountName(a.Name); err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalidAccount, err)
	}
	if err := checkNewPassword(a.Password); err != nil {
		return err
	}
	return AddAccount(f.Path, a.Name, role, a.Password, f.Iterations)
}

// SetAccountPassword sets account name's password; its sessions end at their next request.
func (f PasswordFile) SetAccountPassword(_ context.Context, name, password string) error {
	if err := checkNewPassword(password); err != nil {
		return err
	}
	return SetAccountPassword(f.Path, name, password, f.Iterations)
}

// RemoveAccount removes account name, never the last administrator.
func (f PasswordFile) RemoveAccount(_ context.Context, name string) error {
	return RemoveAccount(f.Path, name)
}

func checkNewPassword(pw string) error {
	if n := len([]rune(pw)); n < MinPasswordLength {
		return fmt.Errorf("%w: the password has %d characters; it needs at least %d", admin.ErrInvalidAccount, n, MinPasswordLength)
	}
	return nil
}
