package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileChoice: --config beats $MXGATE_CONFIG, which beats the default path; the default path is
// used only when it exists, and a file named by the flag or the variable must exist.
func TestConfigFileChoice(t *testing.T) {
	dir := t.TempDir()
	write := func(name, listen string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("[smtp]\nlisten = \""+listen+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flagFile := write("flag.toml", "127.0.0.1:2601")
	envFile := write("env.toml", "127.0.0.1:2602")
	defFile := write("default.toml", "127.0.0.1:2603")
	missing := filepath.Join(dir, "missing.toml")

	tests := []struct {
		name     string
		args     []string
		env      string
		def      string
		wantOut  string // substring of stdout
		wantErr  string // substring of stderr
		wantCode int
	}{
		{"flag wins", []string{"--config", flagFile}, envFile, defFile, flagFile + ": OK", "", 0},
		{"variable", nil, envFile, defFile, envFile + ": OK", "", 0},
		{"default path", nil, "", defFile, defFile + ": OK", "", 0},
		{"no file anywhere", nil, "", missing, "built-in defaults: OK", "", 0},
		{"variable names a missing file", nil, missing, defFile, "", "missing.toml", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			env := environment{getenv: func(k string) string {
				if k == ConfigEnv {
					return tt.env
				}
				return ""
			}, defaultConfig: tt.def}
			code := mainIO(append(tt.args, "check-config"), strings.NewReader(""), &out, &errb, env)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		if code := mainIO(args, strings.NewReader(""), &out, &errb, environment{getenv: func(string) string { return "" }}); code != 0 ||
			!strings.HasPrefix(out.String(), "mxgate ") || !strings.Contains(out.String(), " go1.") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
