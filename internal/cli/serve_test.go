package cli

import (
	"bytes"
	"errors"
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

// TestCheckConfigRunsPreflight: check-config refuses what serve would refuse (missing certificate files, an
// unusable data.dir) and, like serve's validation, creates nothing.
func TestCheckConfigRunsPreflight(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[data]\ndir = \""+dataDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"check-config", good}, &out, &errb); code != 0 {
		t.Fatalf("check-config good.toml = %d, stderr %q", code, errb.String())
	}
	bad := filepath.Join(dir, "bad.toml")
	content := "[data]\ndir = \"" + dataDir + "\"\n[smtp]\ntls_cert_file = \"" + filepath.Join(dir, "no-cert.pem") +
		"\"\ntls_key_file = \"" + filepath.Join(dir, "no-key.pem") + "\"\n"
	if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"check-config", bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "smtp.tls_cert_file") {
		t.Errorf("check-config bad.toml = %d, stderr %q; want 1 naming smtp.tls_cert_file", code, errb.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("check-config created data.dir (%v)", err)
	}
}
