package queue

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the file system holding f: syncfs(2).
func syncFS(f *os.File) error {
	return unix.Syncfs(int(f.Fd()))
}

// SyncFS is the flush Options.GroupSync uses by default (syncfs(2) where there is one), for callers that
// wrap it.
func SyncFS(f *os.File) error { return syncFS(f) }

// GroupSyncSupported returns nil where Options.GroupSync can be used, else why not.
func GroupSyncSupported() error { return groupSyncSupported() }

// groupSyncSupported tells whether syncfs(2) reports writeback errors: Linux 5.8 and later (before, it
// returned success even when writing back a file had failed, and a body could be lost after its 250).
func groupSyncSupported() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("queue: GroupSync: uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := kernelVersion(release)
	if !ok {
		return fmt.Errorf("queue: GroupSync: cannot read the kernel version %q", release)
	}
	if major < 5 || major == 5 && minor < 8 {
		return fmt.Errorf("queue: group sync needs Linux 5.8 or later, whose syncfs reports write-back errors; this is %s", release)
	}
	return nil
}
