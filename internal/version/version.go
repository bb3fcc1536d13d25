// Package version reports which mxgate this binary is: the module version the Go toolchain stamped into it
// (a tag such as v1.2.0, or "(devel)" for a build from a working tree), the VCS revision and whether the tree
// was modified, and the Go version. It reads runtime/debug.ReadBuildInfo and keeps no state of its own.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

// Info describes the running binary.
type Info struct {
	// Version is the module version ("v1.2.0"), or "(devel)" when built from a working tree.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, "" when unknown (go test, go run).
	Revision string `json:"revision,omitempty"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Time is the commit time, zero when unknown.
	Time      time.Time `json:"time,omitzero"`
	GoVersion string    `json:"go_version"`
}

// Get returns the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)", GoVersion: runtime.Version()}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.Time, _ = time.Parse(time.RFC3339, s.Value)
		}
	}
	return in
}

// String is the one-line form `mxgate version` prints: "mxgate v1.2.0 (abc123def456, modified) go1.26.8".
func (i Info) String() string {
	s := "mxgate " + i.Version
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if i.Modified {
			rev += ", modified"
		}
		s += " (" + rev + ")"
	}
	return fmt.Sprintf("%s %s", s, i.GoVersion)
}
