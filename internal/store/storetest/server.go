package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/testenv"
)

// Server is a PostgreSQL server of the test's own, which the test may stop and start again: an outage of
// the whole database server, as opposed to CutOff's refusal of one database on the shared server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	// DSN names the server's postgres database.
	DSN string
}

// StartServer initialises and starts a PostgreSQL server in a temporary directory, listening on a free port
// of 127.0.0.1, stopped and removed when the test ends. initdb and pg_ctl run as the postgres user when the
// test runs as root (PostgreSQL refuses to run as root). Without the server binaries (Debian's postgresql
// package) the test is skipped, saying why, or fails under CI=true.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		testenv.MissingDependency(t, "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
		return nil
	}
	sort.Slice(bins, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bins[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bins[j]))))
		return vi < vj
	})
	dir, err := os.MkdirTemp("", "mxgate-pgserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{t: t, bin: filepath.Dir(bins[len(bins)-1]), dir: dir, port: port,
		DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", port)}
	s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	s.Start()
	t.Cleanup(func() { s.pgctl("stop", "-m", "immediate") })
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Start starts the server (again) and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off", s.port, s.dir), "start")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		s.t.Fatalf("PostgreSQL server started but does not answer: %v", err)
	}
	conn.Close(ctx)
}

// Stop stops the server at once (pg_ctl stop -m immediate): its clients see their connections fail and new
// ones refused.
func (s *Server) Stop() {
	s.t.Helper()
	if out, err := s.pgctl("stop", "-m", "immediate", "-w"); err != nil {
		s.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

func (s *Server) pgctl(args ...string) ([]byte, error) {
	return s.command("pg_ctl", append([]string{"-D", s.data()}, args...)...).CombinedOutput()
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		s.t.Fatalf("%s: %v\n%s\n%s", name, err, out, log)
	}
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}
