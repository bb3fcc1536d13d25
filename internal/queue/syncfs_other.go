//go:build !linux

package queue

import (
	"errors"
	"os"
)

var errNoGroupSync = errors.New("queue: GroupSync needs syncfs(2), which only Linux has")

func syncFS(*os.File) error { return errNoGroupSync }

func groupSyncSupported() error { return errNoGroupSync }
