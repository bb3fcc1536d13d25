// Package gatewaytest runs the built mxgate binary for end-to-end tests, as an administrator would, against
// a simulated internet (package simnet): it builds the binary, writes a configuration pointing at the
// simnet, starts, stops and kills the process, submits messages carrying tokens and counts the tokens the
// receivers got.
package gatewaytest

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

// BuildOptions are what a test package asks of the binary it runs.
type BuildOptions struct {
	// Race builds the binary with the race detector: the gateway's own data races then fail it, at the cost
	// of a slower process.
	Race bool
}

// Main is the TestMain of a package that runs the mxgate binary: it builds the binary once for the test
// process (Build), sets *bin to its path, runs the tests, removes the binary and exits with the tests'
// status. A failed build fails the package.
func Main(m *testing.M, bin *string, opts BuildOptions) {
	path, cleanup, err := Build(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Build builds cmd/mxgate into a temporary directory and returns the binary's path and a function that
// removes it. Main calls it; a TestMain that needs more than Main may call it itself.
func Build(opts BuildOptions) (string, func(), error) {
	dir, err := os.MkdirTemp("", "mxgate-e2e-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "mxgate")
	args := []string{"build", "-o", bin}
	if opts.Race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/mxgate/mxgate/cmd/mxgate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building mxgate (%s): %w", strings.Join(build.Args, " "), err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// FastRetry is a [queue] section for tests that need deferred mail retried within seconds.
const FastRetry = `retry_initial = "1s"
retry_max = "2s"
drain_timeout = "5s"
concurrency = 16
per_domain = 4
`

// Config is what WriteConfig writes.
type Config struct {
	// DataDir is [data] dir; the configuration and the CA file go next to it.
	DataDir string
	// Queue is the body of the [queue] section (FastRetry, or "" for the defaults).
	Queue string
	// Extra is appended as is.
	Extra string
}

// WriteConfig writes a configuration that points the gateway at n and returns its path.
func WriteConfig(t testing.TB, n *simnet.Net, c Config) string {
	t.Helper()
	caFile := filepath.Join(c.DataDir, "..", "ca.pem")
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
%s
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
`, c.DataDir, n.DNSAddr, n.SMTPPort, c.Queue, caFile, n.HTTPSPort, n.Block.String(), c.Extra)
	path := filepath.Join(c.DataDir, "..", "mxgate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Gateway is one mxgate process.
type Gateway struct {
	// SMTP is the address of its SMTP listener.
	SMTP string
	// Done is closed when the process has exited.
	Done chan struct{}

	t       testing.TB
	logSig  chan struct{}
	cmd     *exec.Cmd
	logMu   sync.Mutex
	logTail []string
}

var runningRE = regexp.MustCompile(`"msg":"mxgate running".*"smtp":"([^"]+)"`)

// Start runs `bin serve --config cfgPath` and waits for it to report its SMTP address.
func Start(t testing.TB, bin, cfgPath string) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Done: make(chan struct{}), logSig: make(chan struct{}, 1)}
	g.cmd = exec.Command(bin, "serve", "--config", cfgPath)
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
	go func() { g.cmd.Wait(); close(g.Done) }()
	t.Cleanup(func() { g.Kill() })
	select {
	case g.SMTP = <-addr:
	case <-g.Done:
		t.Fatalf("mxgate exited before it was ready:\n%s", g.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("mxgate not ready after 30s:\n%s", g.Logs())
	}
	return g
}

// WaitLog waits until a log line matches re.
func (g *Gateway) WaitLog(re *regexp.Regexp, timeout time.Duration) string {
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
			g.t.Fatalf("no log line matching %s within %v:\n%s", re, timeout, g.Logs())
		}
	}
}

// Logs returns the last 200 log lines.
func (g *Gateway) Logs() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return strings.Join(g.logTail, "\n")
}

// Signal sends sig to the process.
func (g *Gateway) Signal(sig os.Signal) error { return g.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to be gone.
func (g *Gateway) Kill() {
	select {
	case <-g.Done:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.Done
}

// Stop sends SIGTERM and waits for a clean exit.
func (g *Gateway) Stop() error {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.Done:
	case <-time.After(30 * time.Second):
		g.Kill()
		return fmt.Errorf("mxgate did not stop within 30s after SIGTERM")
	}
	if !g.cmd.ProcessState.Success() {
		return fmt.Errorf("mxgate exited with %v:\n%s", g.cmd.ProcessState, g.Logs())
	}
	return nil
}

// Send submits one message with a unique token and reports whether the gateway acknowledged it.
func Send(addr, rcpt, token string) error {
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

// Tokens counts the tokens the receivers got.
func Tokens(rs ...*simnet.Receiver) map[string]int {
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

// Token returns the token in a message's data, as Send wrote it.
func Token(data []byte) (string, bool) {
	if m := tokenRE.FindSubmatch(data); m != nil {
		return string(m[1]), true
	}
	return "", false
}
