package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Preflight checks what Parse cannot see in the file itself: that the files it names can be used and that
// data.dir is (or can be created as) a writable directory. `mxgate check-config` and `mxgate serve` both run
// it, so that a file check-config accepts is one serve starts with, short of binding ports. It has no side
// effects: it creates no directory, token or password, and writes nothing. Errors are joined, each prefixed
// with its key path.
func Preflight(c *Config) error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if c.SMTP.TLSCertFile != "" && c.SMTP.TLSKeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.SMTP.TLSCertFile, c.SMTP.TLSKeyFile); err != nil {
			add("smtp.tls_cert_file, smtp.tls_key_file", err)
		}
	}
	if c.Admin.TLS() {
		if _, err := tls.LoadX509KeyPair(c.Admin.TLSCertFile, c.Admin.TLSKeyFile); err != nil {
			add("admin.tls_cert_file, admin.tls_key_file", err)
		}
	}
	if c.TLS.CAFile != "" {
		add("tls.ca_file", checkCAFile(c.TLS.CAFile))
	}
	add("data.dir", checkDataDir(c.Data.Dir))
	return errors.Join(errs...)
}

func checkCAFile(path string) error {
	pem, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

// checkDataDir accepts an existing writable directory, or a path whose nearest existing ancestor is one (serve
// creates the rest).
func checkDataDir(dir string) error {
	if dir == "" {
		return errors.New("required")
	}
	for p := filepath.Clean(dir); ; {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", p)
		case err == nil:
			// W_OK|X_OK: create files in it and reach them.
			if err := syscall.Access(p, 0x2|0x1); err != nil {
				return fmt.Errorf("%s is not writable: %w", p, err)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return err
		}
		p = parent
	}
}
