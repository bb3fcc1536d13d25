//go:build !linux

package queue

import (
	"errors"
	"os"
)

var errNoGroupSync = errors.New("queue: GroupSync needs syncfs(2), which only Linux has")

func syncFS(*os.File) error { return errNoGroupSync }

// SyncFS is the flush Options.GroupSync uses by default (syncfs(2) where there is one), for callers that
// wrap it.
func SyncFS(f *os.File) error { return syncFS(f) }

// GroupSyncSupported returns nil where Options.GroupSync can be used, else why not.
func GroupSyncSupported() error { return groupSyncSupported() }

func groupSyncSupported() error { return errNoGroupSync }
