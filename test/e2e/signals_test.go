package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/testpki"
)

func writeCert(t *testing.T, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial returns the serial number of the certificate the SMTP listener presents after STARTTLS.
func servedSerial(t *testing.T, addr string, ca *testpki.CA) *big.Int {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	st, ok := c.TLSConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		t.Fatal("no TLS session after STARTTLS")
	}
	return st.PeerCertificates[0].SerialNumber
}

func writeReloadConfig(t *testing.T, path, dir, level string, maxRcpts int) {
	t.Helper()
	cfg := fmt.Sprintf(`[data]
dir = %q
[smtp]
listen = "127.0.0.1:0"
hostname = "gw.example"
max_recipients = %d
tls_cert_file = %q
tls_key_file = %q
[admin]
listen = "127.0.0.1:0"
[dns]
servers = ["127.0.0.1"]
[log]
format = "json"
level = %q
`, filepath.Join(dir, "data"), maxRcpts, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), level)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP reloads the log level and the SMTP certificate without a restart, logs each "reload: ..." and the
// changed keys that need a restart, and changes nothing when the file does not load; SIGTERM logs
// "stopping" and "stopped" and exits 0.
func TestSignalsReloadAndStop(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA("reload test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.MustIssue(testpki.Leaf{DNSNames: []string{"gw.example"}})
	writeCert(t, first, certFile, keyFile)
	cfgPath := filepath.Join(dir, "mxgate.toml")
	writeReloadConfig(t, cfgPath, dir, "info", 100)

	g := start(t, cfgPath)
	if got, want := servedSerial(t, g.SMTP, ca), first.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("served certificate serial %v, want the first one %v", got, want)
	}

	second := ca.MustIssue(testpki.Leaf{DNSNames: []string{"gw.example"}, CommonName: "renewed"})
	writeCert(t, second, certFile, keyFile)
	writeReloadConfig(t, cfgPath, dir, "debug", 50)
	if err := g.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	const wait = 30 * time.Second
	g.WaitLog(regexp.MustCompile(`"msg":"reload: log.level: info -> debug"`), wait)
	g.WaitLog(regexp.MustCompile(`"msg":"reload: smtp.tls_cert_file: subject \\"CN=renewed\\"`), wait)
	g.WaitLog(regexp.MustCompile(`"msg":"reload: changed keys need a restart: smtp.max_recipients"`), wait)
	if got, want := servedSerial(t, g.SMTP, ca), second.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("after SIGHUP the served certificate serial is %v, want the renewed one %v", got, want)
	}

	// A file that does not load changes nothing, and the daemon goes on serving the renewed certificate.
	if err := os.WriteFile(cfgPath, []byte("[smtp]\nlisten = 25\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.WaitLog(regexp.MustCompile(`"msg":"reload: configuration not loaded, nothing changed".*smtp.listen`), wait)
	if got, want := servedSerial(t, g.SMTP, ca), second.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("after a failed reload the served certificate serial is %v, want %v", got, want)
	}

	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	logs := g.Logs()
	for _, msg := range []string{`"msg":"stopping"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, msg) {
			t.Errorf("no %s line after SIGTERM:\n%s", msg, logs)
		}
	}
}
