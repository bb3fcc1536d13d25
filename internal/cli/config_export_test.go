package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConfigExportRoundTrips: the export of the generation in force, applied back, stages nothing; the
// export of an older generation, applied, stages exactly the way back to it; history --diff shows what
// each generation changed.
func TestConfigExportRoundTrips(t *testing.T) {
	h := newFullHarness(t, false)
	h.mustRun(t, "settings", "set", "Domain.example.com.TLS", "required-verify")
	h.mustRun(t, "settings", "set", "TLSRPT.MaxDestinations", "2")
	h.mustRun(t, "settings", "set", "Sender.EnableMTASTS", "false")
	h.mustRun(t, "settings", "unset", "TLSRPT.OrganizationName")
	h.mustRun(t, "config", "commit", "-m", "tighten example.com", "--author", "ann")

	out := h.mustRun(t, "config", "export")
	for _, want := range []string{"# mxgate settings, generation 2, committed 2025-06-01T10:00:00Z by ann.\n",
		"[settings]\n", "\"Domain.example.com.TLS\" = \"required-verify\"\n", "\"Sender.EnableMTASTS\" = false\n",
		"\"TLSRPT.MaxDestinations\" = 2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("config export:\n%s\ndoes not contain %q", out, want)
		}
	}
	file := writeFile(t, "current.toml", out)
	if got := h.mustRun(t, "config", "apply", file); got != file+" matches generation 2: nothing staged\n" {
		t.Errorf("applying the export of the generation in force: %q", got)
	}

	old := writeFile(t, "gen1.toml", h.mustRun(t, "config", "export", "--generation", "1"))
	got := h.mustRun(t, "config", "apply", old)
	want := "- Domain.example.com.TLS (was \"required-verify\")\n~ Sender.EnableMTASTS: false -> true\n" +
		"- TLSRPT.MaxDestinations (was \"2\"), back to the default \"4\"\n+ TLSRPT.OrganizationName: Acme\n" +
		"staged 4 changes from " + old + "; commit with: mxgate config commit -m NOTE\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applying the export of generation 1 (-want +got):\n%s", diff)
	}
	h.mustRun(t, "config", "discard")
	if got := h.mustFail(t, "config", "export", "--generation", "7"); !strings.Contains(got, "no generation 7") {
		t.Errorf("export of a missing generation: %q", got)
	}

	got = h.mustRun(t, "config", "history", "--diff")
	want = "generation 2  2025-06-01T10:00:00Z  ann  tighten example.com\n" +
		"  + Domain.example.com.TLS: required-verify\n" +
		"  ~ Sender.EnableMTASTS: true -> false\n" +
		"  + TLSRPT.MaxDestinations: 2\n" +
		"  - TLSRPT.OrganizationName (was \"Acme\")\n" +
		"generation 1  2025-06-01T10:00:00Z  mxgate  initial settings from the bootstrap configuration\n" +
		"  + Sender.EnableMTASTS: true\n" +
		"  + TLSRPT.OrganizationName: Acme\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config history --diff (-want +got):\n%s", diff)
	}
}
