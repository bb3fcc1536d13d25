package cluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/mxgate/mxgate/internal/testenv"
)

// pgServer is a throwaway PostgreSQL cluster of the test's own, on a port of its own, so that the test can
// stop and start it without disturbing anything else using the shared test server. initdb and pg_ctl run as
// the postgres user when the test runs as root (PostgreSQL refuses root), as in .ci/postgres.
type pgServer struct {
	bindir, dir string
	port        int
	DSN         string
}

func startPG(t *testing.T) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testenv.MissingDependency(t, "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
		return nil
	}
	sort.Strings(bins)
	p := &pgServer{bindir: filepath.Dir(bins[len(bins)-1])}
	var err error
	if p.dir, err = os.MkdirTemp("", "mxgate-cluster-pg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p.dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(p.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.run(t, "initdb", "-D", p.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	p.Start(t)
	t.Cleanup(func() { p.ctl("stop", "-m", "immediate") })
	p.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	return p
}

func (p *pgServer) data() string { return filepath.Join(p.dir, "data") }

func (p *pgServer) command(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(p.bindir, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

func (p *pgServer) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := p.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func (p *pgServer) ctl(args ...string) error {
	_, err := p.command("pg_ctl", append([]string{"-D", p.data()}, args...)...).CombinedOutput()
	return err
}

// Start starts the server and waits until it accepts connections.
func (p *pgServer) Start(t *testing.T) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
}

func (p *pgServer) start() error {
	out, err := p.command("pg_ctl", "-D", p.data(), "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=200", p.port, p.dir), "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return nil
}

// stop stops the server the way an outage does: connections are cut, nothing is waited for.
func (p *pgServer) stop() error {
	out, err := p.command("pg_ctl", "-D", p.data(), "-w", "-t", "60", "-m", "immediate", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}
