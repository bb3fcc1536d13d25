package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRelativePathsAgainstFileDirectory: names the file sets are read relative to the file's directory,
// absolute names stay as they are, and names the file does not set keep their working-directory defaults.
func TestRelativePathsAgainstFileDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "mxgate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "mxgate.toml")
	content := `[data]
dir = "../../var/mxgate"
[smtp]
tls_cert_file = "cert.pem"
tls_key_file = "./key.pem"
[tls]
ca_file = "/usr/share/ca.pem"
`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// From another working directory, through a relative file name.
	t.Chdir(filepath.Dir(dir))
	cfg, err := Load(filepath.Join("mxgate", "mxgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(dir))
	for _, c := range []struct{ key, got, want string }{
		{"data.dir", cfg.Data.Dir, filepath.Join(root, "var", "mxgate")},
		{"smtp.tls_cert_file", cfg.SMTP.TLSCertFile, filepath.Join(dir, "cert.pem")},
		{"smtp.tls_key_file", cfg.SMTP.TLSKeyFile, filepath.Join(dir, "key.pem")},
		{"tls.ca_file", cfg.TLS.CAFile, "/usr/share/ca.pem"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}

	// A file that does not set data.dir keeps the default, relative to the working directory.
	if err := os.WriteFile(file, []byte("[smtp]\nlisten = \"127.0.0.1:2526\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Data.Dir != Default().Data.Dir {
		t.Errorf("data.dir = %q, want the default %q", cfg.Data.Dir, Default().Data.Dir)
	}
}
