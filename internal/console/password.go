package console

import (
	"bytes"
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

// Bootstrap creates the console password file at path with a random password the first time, and returns
// that password (so that the daemon can print it once) with created set. When the file already exists it
// returns "", false, nil and leaves it alone. The file holds only a salted PBKDF2 hash, mode 0600.
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
	if err := writePassword(atomicfile.Create, path, password, DefaultIterations, rand.Reader); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process bootstrapped between Stat and create: its password stands.
			return "", false, nil
		}
		return "", false, err
	}
	return password, true, nil
}

// WritePassword replaces the password in the file at path (creating it) with a hash of password made with
// iterations rounds (0 means DefaultIterations). The file is written to a temporary name and renamed, so a
// crash leaves either the old or the new password.
func WritePassword(path, password string, iterations int) error {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	return writePassword(atomicfile.Replace, path, password, iterations, rand.Reader)
}

// writePassword writes a hash of password to path with write: atomicfile.Create for a new file,
// atomicfile.Replace to change it.
func writePassword(write func(string, []byte, fs.FileMode) error, path, password string, iterations int, rnd io.Reader) error {
	if password == "" {
		return errors.New("console: empty password")
	}
	if iterations > maxIterations {
		return fmt.Errorf("console: at most %d iterations", maxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return fmt.Errorf("console: random: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, keyLen)
	if err != nil {
		return fmt.Errorf("console: hash: %w", err)
	}
	line := fmt.Sprintf("%s$%d$%s$%s\n", hashScheme, iterations,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	if err := write(path, []byte(line), 0o600); err != nil {
		return fmt.Errorf("console: password file: %w", err)
	}
	return nil
}

// checkPassword reports whether password matches the hash in the file at path.
func checkPassword(path, password string) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, ErrNoPassword
	}
	if err != nil {
		return false, fmt.Errorf("console: password file: %w", err)
	}
	parts := strings.Split(string(bytes.TrimSpace(data)), "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false, fmt.Errorf("console: password file %s: not a %s hash", path, hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return false, fmt.Errorf("console: password file %s: bad iteration count", path)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(want) == 0 {
		return false, fmt.Errorf("console: password file %s: bad encoding", path)
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false, fmt.Errorf("console: hash: %w", err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
