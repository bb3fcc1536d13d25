// Package packaging checks the files an installation uses beside the binary: the systemd unit (with
// systemd-analyze verify, which also checks that the man pages it names exist) and the generated man pages.
package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/testenv"
)

// manPages generates the man pages into dir/man1 and returns dir, a MANPATH entry.
func manPages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"man", filepath.Join(dir, "man1")}, &out, &errb); code != 0 {
		t.Fatalf("mxgate man: exit %d: %s", code, errb.String())
	}
	return dir
}

// TestSystemdUnitVerifies runs systemd-analyze verify on dist/systemd/mxgate.service, with the binary path
// pointed at an executable and the generated man pages on MANPATH (the unit's Documentation= must resolve).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.MissingDependency(t, "systemd-analyze not found (apt-get install systemd): %v", err)
		return
	}
	if _, err := exec.LookPath("man"); err != nil {
		testenv.MissingDependency(t, "man not found (apt-get install man-db): %v", err)
		return
	}
	unit, err := os.ReadFile("../../dist/systemd/mxgate.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=mxgate", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "StateDirectory=mxgate", "SystemCallFilter=@system-service"} {
		if !bytes.Contains(unit, []byte("\n"+want+"\n")) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// verify checks that ExecStart names an executable; this test's binary stands in for /usr/bin/mxgate.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mxgate.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/bin/mxgate"), []byte(exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	cmd.Env = append(os.Environ(), "MANPATH="+manPages(t), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestManPages: one page per command, each a well-formed man(7) page that man renders without warnings.
func TestManPages(t *testing.T) {
	dir := filepath.Join(manPages(t), "man1")
	for _, page := range []string{"mxgate.1", "mxgate-serve.1", "mxgate-queue-show.1", "mxgate-config-export.1", "mxgate-completion-bash.1"} {
		data, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("missing page: %v", err)
			continue
		}
		if !bytes.HasPrefix(data, []byte(".TH ")) || !bytes.Contains(data, []byte("\n.SH NAME\n")) || !bytes.Contains(data, []byte("\n.SH SYNOPSIS\n")) {
			t.Errorf("%s is not a man page:\n%s", page, data)
		}
	}
	man, err := exec.LookPath("man")
	if err != nil {
		testenv.MissingDependency(t, "man not found (apt-get install man-db): %v", err)
		return
	}
	cmd := exec.Command(man, "--warnings", "-l", filepath.Join(dir, "mxgate-serve.1"))
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("man mxgate-serve.1: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "Run the gateway") {
		t.Errorf("rendered page lacks the command's description:\n%s", stdout.String())
	}
}
