// Package e2e runs the built mxgate binary, as an administrator would, against a simulated internet
// (package simnet) in the test process: restarts, crashes, and what the receivers end up with.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/simnet"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "mxgate")
	build := exec.Command("go", "build", "-o", binPath, "github.com/mxgate/mxgate/cmd/mxgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mxgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is one mxgate process.
type gateway struct {
	t       *testing.T
	logSig  chan struct{}
	cmd     *exec.Cmd
	smtp    string
	done    chan struct{}
	logMu   sync.Mutex
	logTail []string
}

// writeConfig writes a configuration that points the gateway at n.
func writeConfig(t *testing.T, n *simnet.Net, dataDir, extra string) string {
	t.Helper()
	caFile := filepath.Join(dataDir, "..", "ca.pem")
	if err := os.WriteFile(caFile, n.TrustedCA.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
[data]
dir = %q
[smtp]
listen = "127.0.0.1:0"
hostname = "gw.e2e.test"
[dns]
servers = [%q]
timeout = "10s"
[delivery]
hostname = "gw.e2e.test"
port = %d
connect_timeout = "3s"
command_timeout = "20s"
[queue]
retry_initial = "1s"
retry_max = "2s"
drain_timeout = "5s"
concurrency = 16
per_domain = 4
[tls]
ca_file = %q
[mtasts]
https_port = %d
allow_networks = [%q]
fetch_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[log]
level = "info"
%s
`, dataDir, n.DNSAddr, n.SMTPPort, caFile, n.HTTPSPort, n.Block.String(), extra)
	path := filepath.Join(dataDir, "..", "mxgate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var runningRE = regexp.MustCompile(`"msg":"mxgate running".*"smtp":"([^"]+)"`)

// start runs `mxgate serve` and waits for it to report its SMTP address.
func start(t *testing.T, cfgPath string) *gateway {
	t.Helper()
	g := &gateway{t: t, done: make(chan struct{}), logSig: make(chan struct{}, 1)}
	g.cmd = exec.Command(binPath, "serve", "--config", cfgPath)
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			g.logMu.Lock()
			g.logTail = append(g.logTail, line)
			if len(g.logTail) > 200 {
				g.logTail = g.logTail[len(g.logTail)-200:]
			}
			g.logMu.Unlock()
			select {
			case g.logSig <- struct{}{}:
			default:
			}
			if m := runningRE.FindStringSubmatch(line); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { g.kill() })
	select {
	case g.smtp = <-addr:
	case <-g.done:
		t.Fatalf("mxgate exited before it was ready:\n%s", g.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("mxgate not ready after 30s:\n%s", g.logs())
	}
	return g
}

// waitLog waits until a log line matches re.
func (g *gateway) waitLog(re *regexp.Regexp, timeout time.Duration) string {
	g.t.Helper()
	deadline := time.After(timeout)
	for {
		g.logMu.Lock()
		for _, l := range g.logTail {
			if re.MatchString(l) {
				g.logMu.Unlock()
				return l
			}
		}
		g.logMu.Unlock()
		select {
		case <-g.logSig:
		case <-deadline:
			g.t.Fatalf("no log line matching %s within %v:\n%s", re, timeout, g.logs())
		}
	}
}

func (g *gateway) logs() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return strings.Join(g.logTail, "\n")
}

// kill sends SIGKILL and waits for the process to be gone.
func (g *gateway) kill() {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gateway) stop() error {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		g.kill()
		return fmt.Errorf("mxgate did not stop within 30s after SIGTERM")
	}
	if !g.cmd.ProcessState.Success() {
		return fmt.Errorf("mxgate exited with %v:\n%s", g.cmd.ProcessState, g.logs())
	}
	return nil
}

// send submits one message with a unique token and reports whether the gateway acknowledged it.
func send(addr, rcpt, token string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	body := fmt.Sprintf("From: alice@sender.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@sender.test>\r\n\r\ntoken %s\r\n", rcpt, token, token, token)
	if err := c.SendMail("alice@sender.test", []string{rcpt}, strings.NewReader(body)); err != nil {
		return err
	}
	c.Quit()
	return nil
}

var tokenRE = regexp.MustCompile(`token (t[0-9]+-[0-9]+)`)

// tokens counts the tokens the receivers got.
func tokens(rs ...*simnet.Receiver) map[string]int {
	got := map[string]int{}
	for _, r := range rs {
		for _, m := range r.Messages() {
			if mm := tokenRE.FindSubmatch(m.Data); mm != nil {
				got[string(mm[1])]++
			}
		}
	}
	return got
}
