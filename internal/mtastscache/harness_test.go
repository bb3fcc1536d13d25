package mtastscache

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/testpki"
)

// Policies of fixture F0 (REQUIREMENTS.md section 0.4).
func pEnf(maxAge int) string {
	return "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: " +
		strconv.Itoa(maxAge) + "\r\n"
}

const (
	pTest = "version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"
	pNone = "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
	// pInvalid lacks version (STS-42).
	pInvalid = "mode: enforce\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeDNS answers TXT queries from a map; other lookups find nothing.
type fakeDNS struct {
	mu      sync.Mutex
	txt     map[string][]string // by name without trailing dot
	err     map[string]error
	queries []string
	// gate, if set, blocks every TXT lookup until it is closed.
	gate chan struct{}
	// asked receives a value (when there is room) for every TXT lookup, before the gate.
	asked chan struct{}
}

func (d *fakeDNS) setTXT(name string, txts ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[name] = txts
	delete(d.err, name)
}

func (d *fakeDNS) setErr(name string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err[name] = err
}

func (d *fakeDNS) LookupTXT(ctx context.Context, name string) ([]string, dnsx.Result, error) {
	name = strings.TrimSuffix(name, ".")
	d.mu.Lock()
	d.queries = append(d.queries, name)
	gate := d.gate
	d.mu.Unlock()
	select {
	case d.asked <- struct{}{}:
	default:
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, dnsx.Result{}, fmt.Errorf("%w: %w", dnsx.ErrTemporary, ctx.Err())
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.err[name]; err != nil {
		return nil, dnsx.Result{}, err
	}
	txts, ok := d.txt[name]
	if !ok {
		return nil, dnsx.Result{}, fmt.Errorf("%s: %w", name, dnsx.ErrNotFound)
	}
	return txts, dnsx.Result{}, nil
}

func (d *fakeDNS) LookupMX(context.Context, string) ([]dnsx.MX, dnsx.Result, error) {
	return nil, dnsx.Result{}, dnsx.ErrNotFound
}

func (d *fakeDNS) LookupIP(context.Context, string) ([]netip.Addr, dnsx.Result, error) {
	return nil, dnsx.Result{}, dnsx.ErrNotFound
}

func (d *fakeDNS) LookupTLSA(context.Context, string) ([]dnsx.TLSA, dnsx.Result, error) {
	return nil, dnsx.Result{}, dnsx.ErrNotFound
}

func (d *fakeDNS) queryCount(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, q := range d.queries {
		if q == name {
			n++
		}
	}
	return n
}

// response is what the policy server answers for one policy host.
type response struct {
	status int
	body   string
}

// policyServer is an HTTPS server on loopback playing every mta-sts.<domain> host, chosen by Host.
type policyServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	resp map[string]response // by policy host
	hits map[string]int
	// hit is closed (and replaced) on every request.
	hit chan struct{}
}

func (s *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	s.mu.Lock()
	s.hits[host]++
	close(s.hit)
	s.hit = make(chan struct{})
	resp, ok := s.resp[host]
	s.mu.Unlock()
	if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(resp.status)
	fmt.Fprint(w, resp.body)
}

// serve sets the answer for domain's policy host.
func (s *policyServer) serve(domain string, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp["mta-sts."+domain] = response{status, body}
}

// fetches returns how many requests domain's policy host received.
func (s *policyServer) fetches(domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits["mta-sts."+domain]
}

// waitFetches waits (bounded by ctx) until domain's policy host has received at least n requests.
func (s *policyServer) waitFetches(ctx context.Context, domain string, n int) error {
	for {
		s.mu.Lock()
		got, next := s.hits["mta-sts."+domain], s.hit
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return fmt.Errorf("%d requests to mta-sts.%s, want %d: %w", got, domain, n, ctx.Err())
		}
	}
}

// env is one test's world: a fake clock and DNS, a policy server, a database file and a cache over them.
type env struct {
	t       *testing.T
	clock   *clocktest.Clock
	dns     *fakeDNS
	policy  *policyServer
	fetcher *mtasts.Fetcher
	dbPath  string
	// pgDSN, when set, puts the cache in that PostgreSQL database instead of dbPath's SQLite one.
	pgDSN   string
	st      Store
	closeDB func() error
	logs    *logtest.Buffer
	cache   *Cache
}

// certNames are the policy hosts the server's certificate covers; untrusted.test is deliberately missing.
var certNames = []string{"mta-sts.example.com", "mta-sts.sub.example.com", "mta-sts.other.test", "mta-sts.new.test"}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, "")
}

// newEnvOn is newEnv with the cache in the PostgreSQL database pgDSN ("" for SQLite).
func newEnvOn(t *testing.T, pgDSN string) *env {
	t.Helper()
	ca, err := testpki.NewCA("mtastscache test root", nil)
	if err != nil {
		t.Fatal(err)
	}
	ps := &policyServer{resp: map[string]response{}, hits: map[string]int{}, hit: make(chan struct{})}
	ps.srv = httptest.NewUnstartedServer(ps)
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.MustIssue(testpki.Leaf{DNSNames: certNames})}}
	ps.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected in some tests
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	port := ps.srv.Listener.Addr().(*net.TCPAddr).Port

	e := &env{
		t:      t,
		clock:  clocktest.New(t0),
		dns:    &fakeDNS{txt: map[string][]string{}, err: map[string]error{}, asked: make(chan struct{}, 1)},
		policy: ps,
		fetcher: &mtasts.Fetcher{
			Client: mtasts.NewHTTPClient(mtasts.ClientOptions{
				LookupIP: func(context.Context, string) ([]netip.Addr, error) {
					return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
				},
				Port:    port,
				RootCAs: ca.Pool(),
				Timeout: 10 * time.Second,
			}),
			Timeout: 10 * time.Second,
		},
		dbPath: filepath.Join(t.TempDir(), "state.db"),
		pgDSN:  pgDSN,
		logs:   &logtest.Buffer{},
	}
	e.open()
	return e
}

// open opens the database and a new cache on it, as a (re)started gateway does.
func (e *env) open() {
	e.t.Helper()
	if e.pgDSN != "" {
		pg, err := store.OpenPostgres(context.Background(), e.pgDSN)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(pg.Close)
		e.st, e.closeDB = PostgresStore{PG: pg}, func() error { pg.Close(); return nil }
	} else {
		db, err := store.OpenSQLite(e.dbPath)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { db.Close() })
		e.st, e.closeDB = SQLiteStore{DB: db}, db.Close
	}
	c, err := New(context.Background(), Options{
		Store:    e.st,
		Resolver: e.dns,
		Fetcher:  e.fetcher,
		Now:      e.clock.Now,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cache = c
}

// restart closes the database and opens it and the cache again.
func (e *env) restart() {
	e.t.Helper()
	if err := e.closeDB(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// publish sets domain's TXT record and policy in one go, as F0 does for example.com.
func (e *env) publish(domain, id, body string) {
	e.dns.setTXT("_mta-sts."+domain, "v=STSv1; id="+id)
	e.policy.serve(domain, http.StatusOK, body)
}

func (e *env) get(domain string) Lookup {
	e.t.Helper()
	l, err := e.cache.Get(context.Background(), address.MustParseDomain(domain))
	if err != nil {
		e.t.Fatalf("Get(%s): %v", domain, err)
	}
	return l
}

// mode returns the mode of l's policy, or "" when no policy is in force.
func mode(l Lookup) mtasts.Mode {
	if l.Policy == nil {
		return ""
	}
	return l.Policy.Mode
}

// summary is the part of a Lookup most tests compare.
type summary struct {
	Mode    mtasts.Mode
	ID      string
	Source  Source
	Failure string
}

func sum(l Lookup) summary {
	return summary{Mode: mode(l), ID: l.ID, Source: l.Source, Failure: string(l.Failure)}
}
