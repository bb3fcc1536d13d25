//go:build !linux

package queue

import (
	"errors"
	"os"
)

var errNoGroupSync = errors.New("queue: GroupSync needs syncfs(2), which only Linux has")

func syncFS(*os.File) error { return errNoGroupSync }

// GroupSyncSupported returns nil where Options.GroupSync can be used, else why not.
func GroupSyncSupported() error { return groupSyncSupported() }

func groupSyncSupported() error { return errNoGroupSync }
