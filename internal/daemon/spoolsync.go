package daemon

import (
	"fmt"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/queue"
)

// ResolveSpoolSync returns the recipe that queue.spool_sync selects on this system, "group" or "file", and a
// warning when "auto" had to fall back to "file". An explicit "group" stays "group": the queue then refuses
// to open where the kernel cannot support it, rather than run with a recipe the administrator did not ask
// for.
func ResolveSpoolSync(setting string) (mode, warning string) {
	return resolveSpoolSync(setting, queue.GroupSyncSupported())
}

// resolveSpoolSync is ResolveSpoolSync with the kernel's answer (nil: group sync is supported) given.
func resolveSpoolSync(setting string, unsupported error) (mode, warning string) {
	if setting != config.SpoolSyncAuto {
		return setting, ""
	}
	if unsupported != nil {
		return config.SpoolSyncFile, fmt.Sprintf("queue.spool_sync = %q: using %q (an fsync per body) instead of %q (one flush per group): %v",
			config.SpoolSyncAuto, config.SpoolSyncFile, config.SpoolSyncGroup, unsupported)
	}
	return config.SpoolSyncGroup, ""
}
