//go:build !(linux || darwin || freebsd)

package store

import "errors"

// ErrFreeSpaceUnknown is returned by FreeSpace where the system does not say.
var ErrFreeSpaceUnknown = errors.New("store: free space unknown on this system")

// FreeSpace returns ErrFreeSpaceUnknown: this system has no statfs(2).
func FreeSpace(string) (int64, error) { return 0, ErrFreeSpaceUnknown }
