package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/testpki"
)

// TestMain runs the command itself when the test re-executes its own binary as the daemon.
func TestMain(m *testing.M) {
	if os.Getenv("MXGATE_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// daemon is mxgate serve running as a child process, with its JSON log lines.
type daemon struct {
	cmd  *exec.Cmd
	logs chan map[string]any
	done chan error
}

func startDaemon(t *testing.T, configPath string) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--config", configPath)
	cmd.Env = append(os.Environ(), "MXGATE_TEST_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logs: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				d.logs <- m
			} else {
				d.logs <- map[string]any{"msg": "(not JSON) " + sc.Text()}
			}
		}
		close(d.logs)
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return d
}

// waitLog returns the first log line whose message starts with prefix.
func (d *daemon) waitLog(t *testing.T, prefix string) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-d.logs:
			if !ok {
				t.Fatalf("the daemon ended before logging %q", prefix)
			}
			if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
				return m
			}
		case <-timeout:
			t.Fatalf("no log line %q", prefix)
		}
	}
}

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

func writeConfig(t *testing.T, path, dir, level string, maxRcpts int) {
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
	writeConfig(t, cfgPath, dir, "info", 100)

	d := startDaemon(t, cfgPath)
	running := d.waitLog(t, "mxgate running")
	addr, _ := running["smtp"].(string)
	if got, want := servedSerial(t, addr, ca), first.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("served certificate serial %v, want the first one %v", got, want)
	}

	second := ca.MustIssue(testpki.Leaf{DNSNames: []string{"gw.example"}, CommonName: "renewed"})
	writeCert(t, second, certFile, keyFile)
	writeConfig(t, cfgPath, dir, "debug", 50)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "reload: log.level: info -> debug")
	if m := d.waitLog(t, "reload: smtp.tls_cert_file: "); !strings.Contains(m["msg"].(string), "renewed") {
		t.Errorf("certificate reload line %q does not name the new certificate", m["msg"])
	}
	if m := d.waitLog(t, "reload: changed keys need a restart: "); m["msg"] != "reload: changed keys need a restart: smtp.max_recipients" {
		t.Errorf("restart line %q, want smtp.max_recipients only", m["msg"])
	}
	if got, want := servedSerial(t, addr, ca), second.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("after SIGHUP the served certificate serial is %v, want the renewed one %v", got, want)
	}

	// A file that does not load changes nothing, and the daemon goes on serving the renewed certificate.
	if err := os.WriteFile(cfgPath, []byte("[smtp]\nlisten = 25\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := d.waitLog(t, "reload: configuration not loaded, nothing changed"); !strings.Contains(fmt.Sprint(m["err"]), "smtp.listen") {
		t.Errorf("failed reload line %v does not name the bad key", m)
	}
	if got, want := servedSerial(t, addr, ca), second.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Fatalf("after a failed reload the served certificate serial is %v, want %v", got, want)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "stopping")
	d.waitLog(t, "stopped")
	for range d.logs {
	}
	if err := <-d.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v, want 0", err)
	}
}
