package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
)

// The default spool_sync must start on a kernel without group sync (Linux before 5.8, other systems): it
// falls back to "file" and says why. Only an explicit "group" is kept, and refused by the queue there.
func TestSpoolSyncDefaultFallsBackToFileWhereGroupIsUnsupported(t *testing.T) {
	if got := config.Default().Queue.SpoolSync; got != config.SpoolSyncAuto {
		t.Fatalf("default queue.spool_sync = %q, want %q", got, config.SpoolSyncAuto)
	}
	old := errors.New("queue: group sync needs Linux 5.8 or later, whose syncfs reports write-back errors; this is 4.18.0-553.el8_10.x86_64")
	for _, tt := range []struct {
		setting     string
		unsupported error
		mode        string
		warns       bool
	}{
		{config.SpoolSyncAuto, nil, config.SpoolSyncGroup, false},
		{config.SpoolSyncAuto, old, config.SpoolSyncFile, true},
		{config.SpoolSyncGroup, old, config.SpoolSyncGroup, false},
		{config.SpoolSyncFile, nil, config.SpoolSyncFile, false},
	} {
		mode, warning := resolveSpoolSync(tt.setting, tt.unsupported)
		if mode != tt.mode || (warning != "") != tt.warns {
			t.Errorf("resolveSpoolSync(%q, %v) = %q, %q; want %q, warning %v", tt.setting, tt.unsupported, mode, warning, tt.mode, tt.warns)
		}
		if tt.warns && !strings.Contains(warning, "4.18.0") {
			t.Errorf("warning %q does not say why", warning)
		}
	}
}
