package config

import (
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// resolvePaths makes the relative file and directory names that the file sets absolute against dir, the
// file's directory, the way nginx and Postfix read their own files: the same file means the same thing
// whatever directory mxgate is started from (systemd starts it in /). Names the file does not set keep
// their defaults, which are relative to the working directory. It runs after a successful Parse, so the
// document is known to be valid TOML.
func (c *Config) resolvePaths(data []byte, dir string) {
	var v map[string]any
	md, err := toml.Decode(string(data), &v)
	if err != nil {
		return
	}
	for _, p := range []struct {
		key []string
		val *string
	}{
		{[]string{"data", "dir"}, &c.Data.Dir},
		{[]string{"smtp", "tls_cert_file"}, &c.SMTP.TLSCertFile},
		{[]string{"smtp", "tls_key_file"}, &c.SMTP.TLSKeyFile},
		{[]string{"tls", "ca_file"}, &c.TLS.CAFile},
		{[]string{"admin", "tls_cert_file"}, &c.Admin.TLSCertFile},
		{[]string{"admin", "tls_key_file"}, &c.Admin.TLSKeyFile},
	} {
		if md.IsDefined(p.key...) && *p.val != "" && !filepath.IsAbs(*p.val) {
			*p.val = filepath.Join(dir, *p.val)
		}
	}
}
