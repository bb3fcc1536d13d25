package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

// TestAdminListenerOverTLS: with admin.tls_cert_file and admin.tls_key_file the API and the console answer
// over HTTPS only, and the CLI, reading the same configuration, connects by trusting exactly that
// certificate; a console login over it sets Secure cookies.
func TestAdminListenerOverTLS(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	dir := t.TempDir()
	cert, err := testpki.SelfSigned("gw.example.net")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := ln.Addr().String()
	ln.Close()
	cfg := n.GatewayConfig(filepath.Join(dir, "data"))
	cfg.Admin.Listen, cfg.Admin.TLSCertFile, cfg.Admin.TLSKeyFile = adminAddr, certFile, keyFile
	d, err := daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// The CLI reads the same file: https, and the pinned certificate.
	cfgFile := filepath.Join(dir, "mxgate.toml")
	toml := "[data]\ndir = \"data\"\n[admin]\nlisten = \"" + adminAddr + "\"\ntls_cert_file = \"admin.pem\"\ntls_key_file = \"admin.key\"\n"
	if err := os.WriteFile(cfgFile, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"--config", cfgFile, "status"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "node") {
		t.Fatalf("status over TLS: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}

	// Plain HTTP gets nothing useful.
	if resp, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS admin listener answered 200")
		}
	}
	// The console's login form over HTTPS sets its cookie Secure.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTrusting(t, cert.Certificate[0])}}
	resp, err := client.Get("https://" + adminAddr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var secure bool
	for _, c := range resp.Cookies() {
		secure = secure || c.Secure
	}
	if len(resp.Cookies()) == 0 || !secure {
		t.Errorf("console cookies over HTTPS: %v, want Secure", resp.Cookies())
	}
}

func tlsTrusting(t *testing.T, der []byte) *tls.Config {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &tls.Config{RootCAs: pool, ServerName: "gw.example.net"}
}
