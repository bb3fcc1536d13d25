package console

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/atomicfile"
)

// DefaultIterations is the PBKDF2-HMAC-SHA256 iteration count of new password files (OWASP's 2023
// recommendation for this construction). The count is stored in the file, so it can be raised later
// without invalidating existing passwords.
const DefaultIterations = 600_000

// MinPasswordLength is the shortest password the account page accepts.
const MinPasswordLength = 12

const (
	hashScheme = "pbkdf2-sha256"
	saltLen    = 16
	keyLen     = 32
	// maxIterations bounds the work a (corrupted or hostile) password file can make a login do.
	maxIterations = 10_000_000
)

// ErrNoPassword is returned when the password file does not exist.
var ErrNoPassword = errors.New("console: no password file")

// Bootstrap creates the console password file at path the first time, holding one administrator account,
// BootstrapAccount, with a random password, and returns that password (so that the daemon can print it
// once) with created set. When the file already exists it returns "", false, nil and leaves it alone. The
// file holds only salted PBKDF2 hashes, mode 0600 (see AddAccount for more accounts).
func Bootstrap(path string) (password string, created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return "", false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("console: password file: %w", err)
	}
	b := make([]byte, 18)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", false, fmt.Errorf("console: random: %w", err)
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	h, err := hashLine(password, DefaultIterations, rand.Reader)
	if err != nil {
		return "", false, err
	}
	line := fmt.Sprintf("%s %s %s\n", BootstrapAccount, Administrator, h)
	if err := atomicfile.Create(path, []byte(line), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process bootstrapped between Stat and create: its password stands.
			return "", false, nil
		}
		return "", false, fmt.Errorf("console: password file: %w", err)
	}
	return password, true, nil
}

// WritePassword sets the password of the administrator BootstrapAccount in the file at path (creating
// the file with that one account) to a hash of password made with iterations rounds (0 means
// DefaultIterations). The file is written to a temporary name and renamed, so a crash leaves either the
// old or the new password.
func WritePassword(path, password string, iterations int) error {
	err := SetAccountPassword(path, BootstrapAccount, password, iterations)
	if errors.Is(err, ErrNoPassword) {
		return AddAccount(path, BootstrapAccount, Administrator, password, iterations)
	}
	return err
}

// hashLine returns the stored form of a hash of password: scheme$iterations$salt$key.
func hashLine(password string, iterations int, rnd io.Reader) (string, error) {
	if password == "" {
		return "", errors.New("console: empty password")
	}
	if iterations > maxIterations {
		return "", fmt.Errorf("console: at most %d iterations", maxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", fmt.Errorf("console: random: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, keyLen)
	if err != nil {
		return "", fmt.Errorf("console: hash: %w", err)
	}
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iterations,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// checkPassword reports whether password is that of the administrator BootstrapAccount in the file at path.
func checkPassword(path, password string) (bool, error) {
	_, ok, err := checkAccount(path, BootstrapAccount, password)
	return ok, err
}

// checkHash reports whether password matches hash (as hashLine writes it), read from the store where.
func checkHash(where, hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false, fmt.Errorf("console: accounts in %s: not a %s hash", where, hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return false, fmt.Errorf("console: accounts in %s: bad iteration count", where)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(want) == 0 {
		return false, fmt.Errorf("console: accounts in %s: bad encoding", where)
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false, fmt.Errorf("console: hash: %w", err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
