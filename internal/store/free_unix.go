//go:build linux || darwin || freebsd

package store

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrFreeSpaceUnknown is returned by FreeSpace where the system does not say.
var ErrFreeSpaceUnknown = errors.New("store: free space unknown on this system")

// FreeSpace returns the octets an unprivileged process may still write on the file system holding path
// (statfs(2): the available blocks, not counting those reserved for root).
func FreeSpace(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("store: free space of %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
