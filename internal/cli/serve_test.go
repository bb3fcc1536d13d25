package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
)

func TestSecretFileWarnings(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mxgate.toml")
	key := filepath.Join(dir, "key.pem")
	for _, p := range []string{cfgPath, key} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.SMTP.Users = map[string]string{"relay": "secret"}
	cfg.SMTP.TLSKeyFile = key
	got := secretFileWarnings(cfgPath, cfg)
	if len(got) != 2 || !strings.Contains(got[0], cfgPath) || !strings.Contains(got[1], key) {
		t.Fatalf("warnings = %q, want one for the configuration and one for the key", got)
	}
	for _, p := range []string{cfgPath, key} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := secretFileWarnings(cfgPath, cfg); len(got) != 0 {
		t.Errorf("warnings for 0600 files: %q", got)
	}
	cfg.SMTP.Users = nil
	os.Chmod(cfgPath, 0o644)
	if got := secretFileWarnings(cfgPath, cfg); len(got) != 0 {
		t.Errorf("a configuration without secrets got warnings: %q", got)
	}
}
