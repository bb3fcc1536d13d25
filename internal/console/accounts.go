package console

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/atomicfile"
)

// Role is what a console account may do.
type Role string

const (
	// Administrator sees every page and may change state: stage, commit and roll back settings, act on
	// the queue and the policy cache, suppress report addresses.
	Administrator Role = "administrator"
	// Viewer sees every page but changes nothing (the server refuses with 403); it may change its own
	// password.
	Viewer Role = "viewer"
)

// PasswordFileName is the name of the accounts file in the data directory.
const PasswordFileName = "console-password"

// BootstrapAccount is the name of the account a password file written by Bootstrap (or by versions
// without named accounts, one bare hash) holds: an administrator.
const BootstrapAccount = "admin"

// ParseRole parses "administrator" or "viewer".
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case Administrator, Viewer:
		return r, nil
	}
	return "", fmt.Errorf("console: unknown role %q (want %s or %s)", s, Administrator, Viewer)
}

// Account is one console account as listed (the hash stays in the file).
type Account struct {
	Name string
	Role Role
}

type accountEntry struct {
	Account
	hash string
}

var (
	// ErrNoAccount is returned for an account name the file does not hold.
	ErrNoAccount = fmt.Errorf("console: %w", admin.ErrNoAccount)
	// ErrAccountExists is returned when adding a name the file already holds.
	ErrAccountExists = fmt.Errorf("console: %w", admin.ErrAccountExists)
	// ErrLastAdministrator is returned when a change would leave no administrator.
	ErrLastAdministrator = fmt.Errorf("console: %w", admin.ErrLastAdministrator)
)

// ValidAccountName checks an account name: 1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with
// a letter or digit.
func ValidAccountName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("console: account name %q: want 1 to 64 characters", name)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '.' || r == '_' || r == '-') && i > 0:
		default:
			return fmt.Errorf("console: account name %q: only a-z, 0-9, '.', '_' and '-' (not first) are allowed", name)
		}
	}
	return nil
}

// accountsMu serializes this process's read-modify-write cycles of password files; lockAccounts those of
// different processes (the daemon's Account page and the CLI).
var accountsMu sync.Mutex

// lockAccounts takes an exclusive lock on path's lock file (path + ".lock") and returns its release.
func lockAccounts(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console: password file lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("console: password file lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// update runs change on the accounts of the password file at path (nil when there is none yet) under
// both locks, and writes back what it returns.
func updateAccounts(path string, change func([]accountEntry) ([]accountEntry, error)) error {
	accountsMu.Lock()
	defer accountsMu.Unlock()
	unlock, err := lockAccounts(path)
	if err != nil {
		return err
	}
	defer unlock()
	es, err := readAccounts(path)
	if err != nil && !errors.Is(err, ErrNoPassword) {
		return err
	}
	if es, err = change(es); err != nil {
		return err
	}
	return writeAccounts(path, es)
}

// readAccounts parses the password file at path: one account per line, "NAME ROLE HASH"; a file of a
// single bare hash (Bootstrap's format before named accounts) is the administrator BootstrapAccount.
func readAccounts(path string) ([]accountEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoPassword
	}
	if err != nil {
		return nil, fmt.Errorf("console: password file: %w", err)
	}
	var out []accountEntry
	for i, line := range strings.Split(string(bytes.TrimSpace(data)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 1 && strings.HasPrefix(f[0], hashScheme+"$") {
			f = []string{BootstrapAccount, string(Administrator), f[0]}
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("console: password file %s line %d: want NAME ROLE HASH", path, i+1)
		}
		if err := ValidAccountName(f[0]); err != nil {
			return nil, fmt.Errorf("console: password file %s line %d: %w", path, i+1, err)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("console: password file %s line %d: %w", path, i+1, err)
		}
		if slices.ContainsFunc(out, func(e accountEntry) bool { return e.Name == f[0] }) {
			return nil, fmt.Errorf("console: password file %s line %d: account %s appears twice", path, i+1, f[0])
		}
		out = append(out, accountEntry{Account: Account{Name: f[0], Role: role}, hash: f[2]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("console: password file %s holds no account", path)
	}
	return out, nil
}

func writeAccounts(path string, accts []accountEntry) error {
	var b strings.Builder
	b.WriteString("# mxgate console accounts: NAME ROLE HASH (edit with mxgate console user)\n")
	for _, a := range accts {
		fmt.Fprintf(&b, "%s %s %s\n", a.Name, a.Role, a.hash)
	}
	if err := atomicfile.Replace(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("console: password file: %w", err)
	}
	return nil
}

// Accounts lists the accounts of the password file at path, in file order.
func Accounts(path string) ([]Account, error) {
	es, err := readAccounts(path)
	if err != nil {
		return nil, err
	}
	out := make([]Account, len(es))
	for i, e := range es {
		out[i] = e.Account
	}
	return out, nil
}

// AddAccount adds account name with role and password to the password file at path (creating the file).
// iterations is the PBKDF2 cost; 0 means DefaultIterations.
func AddAccount(path, name string, role Role, password string, iterations int) error {
	if err := ValidAccountName(name); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	h, err := hashPassword(password, iterations)
	if err != nil {
		return err
	}
	return updateAccounts(path, func(es []accountEntry) ([]accountEntry, error) {
		if slices.ContainsFunc(es, func(e accountEntry) bool { return e.Name == name }) {
			return nil, fmt.Errorf("%w: %s", ErrAccountExists, name)
		}
		return append(es, accountEntry{Account: Account{Name: name, Role: role}, hash: h}), nil
	})
}

// SetAccountPassword replaces the password of account name in the password file at path.
func SetAccountPassword(path, name, password string, iterations int) error {
	h, err := hashPassword(password, iterations)
	if err != nil {
		return err
	}
	return updateAccounts(path, func(es []accountEntry) ([]accountEntry, error) {
		i := slices.IndexFunc(es, func(e accountEntry) bool { return e.Name == name })
		if len(es) == 0 {
			return nil, ErrNoPassword
		}
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoAccount, name)
		}
		es[i].hash = h
		return es, nil
	})
}

// RemoveAccount removes account name from the password file at path; it refuses to remove the last
// administrator.
func RemoveAccount(path, name string) error {
	return updateAccounts(path, func(es []accountEntry) ([]accountEntry, error) {
		if len(es) == 0 {
			return nil, ErrNoPassword
		}
		i := slices.IndexFunc(es, func(e accountEntry) bool { return e.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoAccount, name)
		}
		es = slices.Delete(es, i, i+1)
		if !slices.ContainsFunc(es, func(e accountEntry) bool { return e.Role == Administrator }) {
			return nil, fmt.Errorf("%w: %s", ErrLastAdministrator, name)
		}
		return es, nil
	})
}

func hashPassword(password string, iterations int) (string, error) {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	return hashLine(password, iterations, rand.Reader)
}

// lookupAccount returns account name of the password file at path and its hash.
func lookupAccount(path, name string) (accountEntry, error) {
	es, err := readAccounts(path)
	if err != nil {
		return accountEntry{}, err
	}
	i := slices.IndexFunc(es, func(e accountEntry) bool { return e.Name == name })
	if i < 0 {
		return accountEntry{}, fmt.Errorf("%w: %s", ErrNoAccount, name)
	}
	return es[i], nil
}

// checkAccount reports whether password is account name's, and returns the account.
func checkAccount(path, name, password string) (accountEntry, bool, error) {
	e, err := lookupAccount(path, name)
	if errors.Is(err, ErrNoAccount) {
		// Hash anyway, at the file's cost, so that the time taken does not tell which names exist.
		if es, rerr := readAccounts(path); rerr == nil {
			checkHash(path, es[0].hash, password)
		}
		return accountEntry{}, false, err
	}
	if err != nil {
		return accountEntry{}, false, err
	}
	ok, err := checkHash(path, e.hash, password)
	return e, ok, err
}

// Authenticate reports whether password is that of account name in the password file at path, and
// returns the account.
func Authenticate(path, name, password string) (Account, bool, error) {
	e, ok, err := checkAccount(path, name, password)
	return e.Account, ok, err
}
