package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxgate/mxgate/internal/atomicfile"
)

// TokenFileName is the admin token's file name in the data directory.
const TokenFileName = "admin.token"

// TokenPath returns the admin token file of dataDir.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFileName) }

// LoadOrCreateToken returns the admin token stored in dataDir/admin.token. On first start it creates dataDir
// (mode 0700) if needed and a token of 32 random bytes in hex in the file (mode 0600), and reports created.
// Concurrent first starts agree on one token. Callers should warn when TokenFileInsecure reports the file
// readable by others.
func LoadOrCreateToken(dataDir string) (token string, created bool, err error) {
	path := TokenPath(dataDir)
	tok, err := ReadToken(path)
	if err == nil {
		return tok, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("admin: token: %w", err)
	}
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails
	tok = hex.EncodeToString(b[:])

	// atomicfile.Create never shows the file half-written, and a concurrent start that got there first wins.
	if err := atomicfile.Create(path, []byte(tok+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			tok, err := ReadToken(path)
			return tok, false, err
		}
		return "", false, fmt.Errorf("admin: token: %w", err)
	}
	return tok, true, nil
}

// ReadToken reads a token file: the token is its content without surrounding white space. Errors wrap
// fs.ErrNotExist when the file does not exist.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin: token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinTokenLength {
		return "", fmt.Errorf("admin: token: %s holds no token of at least %d characters", path, MinTokenLength)
	}
	return tok, nil
}

// TokenFileInsecure reports whether the token file at path can be read or written by its group or by
// others. A file that cannot be examined is not reported.
func TokenFileInsecure(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	return fi.Mode().Perm()&0o077 != 0
}
